export type { Variant } from '@dexar/core';
export {
  externalLocations,
  type WebBackend,
  type WebBackendInfo,
  type WebBackendOptions,
  type WebExecutionProvider,
  webBackend,
} from './backend.js';
export { type DerivedStore, derivedStore, IndexedDbStore, MemoryStore } from './cache.js';
export {
  type DownloadProgress,
  type FileFolderOptions,
  FileModelFolder,
  filesFromDirectory,
  openDirectoryHandle,
  type PickedFile,
  type UrlFolderOptions,
  UrlModelFolder,
  type WebFolderOptions,
  WebModelFolder,
} from './folder.js';
export { decodeImage, encodePng, resizeImage, toImageData } from './image.js';
export { encodePngBytes } from './png.js';
