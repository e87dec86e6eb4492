/**
 * Faithfulness of token weights: on targets whose grounded words are known, does the method's
 * token weight (DEX-AR's delta, paper Eq. 6) rank the grounded words' tokens above the filler?
 */

export interface TokenRanking {
  /** Mean weight of the grounded words' tokens and of the filler tokens. */
  groundedMean: number;
  fillerMean: number;
  /** 1 when groundedMean > fillerMean. */
  ok: number;
  /** 1 when every grounded token outweighs every filler token (min grounded > max filler). */
  strictOk: number;
}

/**
 * Compares the weights of `grounded` and `filler` token indices; `null` when either set is empty
 * (a one-word answer has no filler).
 */
export function tokenRanking(
  weights: ArrayLike<number>,
  grounded: readonly number[],
  filler: readonly number[],
): TokenRanking | null {
  if (grounded.length === 0 || filler.length === 0) return null;
  const pick = (idx: readonly number[]) => idx.map((i) => weights[i]);
  const g = pick(grounded);
  const f = pick(filler);
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const groundedMean = avg(g);
  const fillerMean = avg(f);
  return {
    groundedMean,
    fillerMean,
    ok: groundedMean > fillerMean ? 1 : 0,
    strictOk: Math.min(...g) > Math.max(...f) ? 1 : 0,
  };
}

/**
 * Filler tokens of a target: tokens that belong to no grounded word and hold a letter (punctuation
 * is neither grounded nor filler). For the shapes captions these are exactly "a" and "and".
 */
export function fillerTokens(tokens: readonly string[], grounded: ReadonlySet<number>): number[] {
  const out: number[] = [];
  tokens.forEach((t, i) => {
    if (!grounded.has(i) && /\p{L}/u.test(t)) out.push(i);
  });
  return out;
}
