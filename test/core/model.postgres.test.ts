/**
 * The model-based property test of the filesystem core (model.property.test.ts, which
 * describes what it checks) with its metadata on PostgreSQL: a fresh database on a
 * throwaway server for each sequence. Fewer sequences than on SQLite by default
 * (ROSET_MODEL_RUNS overrides): each one also creates and drops a database.
 */
import { afterAll, beforeAll } from 'vitest';
import { describeCoreModel } from '../support/model-core.js';
import { startPostgres, type PostgresServer } from '../support/postgres.js';

let server: PostgresServer;
beforeAll(async () => { server = await startPostgres(); });
afterAll(async () => { await server?.stop(); });

describeCoreModel({ testFile: 'test/core/model.postgres.test.ts', defaultRuns: 80, label: 'metadata on PostgreSQL', metadata: () => ({ kind: 'postgres', server }) });
