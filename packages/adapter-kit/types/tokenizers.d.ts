// The part of @huggingface/tokenizers 0.2 that dexar uses, declared here because the package's own
// declarations import their files without extensions, which NodeNext resolution cannot follow: every
// type of theirs would be `any` (only `skipLibCheck` hides the errors). tsconfig.json's `paths`
// points the package name at this file; the emitted JavaScript imports the real package.
// Signatures as in the package's types/core/Tokenizer.d.ts.

export interface Encoding {
  ids: number[];
  tokens: string[];
  attention_mask: number[];
  token_type_ids?: number[];
}

export declare class Tokenizer {
  constructor(tokenizer: object, config: object);
  encode(text: string, options?: { text_pair?: string | null; add_special_tokens?: boolean }): Encoding;
  decode(
    token_ids: number[] | bigint[],
    options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean | null },
  ): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}
