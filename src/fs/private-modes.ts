/**
 * Modes of what ckpt creates that holds a process's memory or a credential: only its owner may read
 * it, whatever the umask.
 */
export const PRIVATE_FILE = 0o600;
export const PRIVATE_DIR = 0o700;
