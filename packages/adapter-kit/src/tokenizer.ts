import { Tokenizer } from '@huggingface/tokenizers';

/**
 * A model's tokenizer as dexar uses it (`tokenizer.json` with `tokenizer_config.json`, run by
 * @huggingface/tokenizers). Families depend on this interface, not on the library's classes.
 */
export interface TextTokenizer {
  /** Token ids of `text`; `add_special_tokens` (default true) adds what the post-processor adds (BOS, ...). */
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  /** Text of `ids`; `skip_special_tokens` drops BOS, EOS and the like. */
  decode(ids: readonly number[], options?: { skip_special_tokens?: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

/** The tokenizer of a transformers.js model folder, from its parsed `tokenizer.json` and `tokenizer_config.json`. */
export function createTokenizer(tokenizerJson: object, tokenizerConfig: object): TextTokenizer {
  const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  return {
    encode: (text, options) => tokenizer.encode(text, options),
    decode: (ids, options) => tokenizer.decode([...ids], options),
    token_to_id: (token) => tokenizer.token_to_id(token),
    id_to_token: (id) => tokenizer.id_to_token(id),
  };
}
