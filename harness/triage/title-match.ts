import { isMatch } from 'matcher';

/**
 * The one dialect for patterns over test titles, shared by `--match` and known issues: the
 * `matcher` package's, as ava reads its own --match. `*` matches any run of characters
 * (newlines too), a leading `!` negates, matching ignores case; nothing else is special.
 * With several patterns a title matches when it matches a plain pattern and no negated one
 * (only negated patterns: when it matches none of them).
 */
export function titleMatches(title: string, patterns: string | readonly string[]): boolean {
  return isMatch(title, patterns as string | string[]);
}
