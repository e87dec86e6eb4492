interface SubtleLike {
  digest(algorithm: string, data: Uint8Array): Promise<ArrayBuffer>;
}

/** SHA-256 of `bytes` through Web Crypto, which Node 20+ and secure browser contexts both have. */
export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  const subtle = (globalThis as { crypto?: { subtle?: SubtleLike } }).crypto?.subtle;
  if (!subtle) {
    throw new Error('Web Crypto (globalThis.crypto.subtle) is not available; use Node 20+ or a secure browser context');
  }
  return new Uint8Array(await subtle.digest('SHA-256', bytes));
}

/** A digest as lower-case hex: how cache keys and cache records spell it. */
export function hexDigest(digest: Uint8Array): string {
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
