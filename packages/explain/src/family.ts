import { adapterFor, type FamilyModel, type ModelAdapter } from '@dexar/core/adapter';
import { type Backend, type ModelFolder, readJson } from '@dexar/core/runtime';

/**
 * A model folder opened through its family's adapter: `adapter` when given (it must load the
 * folder's `model_type`), else the one registered for that type. Also the parsed `config.json`.
 */
export async function openFamilyModel(o: {
  backend: Backend;
  folder: ModelFolder;
  adapter?: ModelAdapter;
}): Promise<{ model: FamilyModel; config: unknown }> {
  const config = await readJson(o.folder, 'config.json');
  const model = await adapterFor(config, o.folder.location, o.adapter).load(o.folder, o.backend, config);
  return { model, config };
}
