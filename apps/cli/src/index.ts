export { builtin } from './builtin.js';
export { explain, generate, loadImage, type NodeOptions, openExplainer } from './library.js';
export { writeOutputs } from './outputs.js';
