/**
 * The database a multi-node test runs `roset serve` on: PostgreSQL, a throwaway cluster
 * made for the test (test/support/postgres.ts) and removed after. Never skipped: a
 * missing server fails the test with how to install it.
 */
import { startPostgres } from './postgres.js';

export interface ClusterDatabase {
  url: string;
  /** Stops and starts the server (a database restart under a running cluster). */
  restart: () => Promise<void>;
  stop: () => Promise<void>;
}

export async function clusterDatabase(): Promise<ClusterDatabase> {
  const server = await startPostgres();
  try {
    const url = await server.createDatabase();
    return { url, restart: () => server.restart(), stop: () => server.stop() };
  } catch (err) {
    await server.stop();
    throw err;
  }
}
