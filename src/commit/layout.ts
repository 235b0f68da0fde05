/**
 * Bucket layout (design §3). Every key the project writes is built here, relative to
 * the store prefix.
 */
export const objectKey = (sha256: string): string => `objects/${sha256.slice(0, 2)}/${sha256}`;
export const manifestKey = (commitId: string): string => `commits/${commitId}.json`;
export const groupKey = (groupId: string): string => `groups/${groupId}.json`;
export const refKey = (name: string): string => `refs/${name}.json`;
