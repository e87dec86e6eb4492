export type { Variant } from '@dexar/core';
export { MAX_THREADS, type NodeBackendOptions, nodeBackend } from './backend.js';
export { checkRegularFile, FILE_LIMITS, type ReadLimit, readRegularFile } from './files.js';
export { NodeModelFolder, openModelFolder, userCacheDirectory, writeAtomically } from './folder.js';
export { decodeImage, encodePng, resizeImage } from './image.js';
