// How a user's value goes into a message: cut, escaped, quoted. A leaf: every layer's messages use it.

/** How long a user's value may be in a message before it is cut ("…"). */
const SHOWN_LENGTH = 80

/** What a terminal would act on: C0 controls, DEL, C1 controls, and bidi and line-separator marks. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/**
 * A user's text as it goes into a message, unquoted: cut to `max` characters ("…") and with every
 * control, C1 and bidi-override character escaped (`\n`, `\u001b`), so a 100,000-character argument
 * or a binary file cannot flood or repaint the terminal. {@link showValue} is the quoted form.
 */
export function showText(text: string, max = SHOWN_LENGTH): string {
  return escapeControls(cut(text, max))
}

function cut(text: string, max: number): string {
  if (text.length <= max) return text
  // By code point, so an emoji is never split into half a surrogate pair.
  const chars = [...text]
  return chars.length > max ? chars.slice(0, max).join('') + '…' : text
}

function escapeControls(text: string): string {
  const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }
  return text.replace(CONTROL, (c) => named[c] ?? '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

/**
 * A user's text quoted for a message (`"value"`), cut and escaped as {@link showText} does; quotes
 * and backslashes inside are escaped too. Every message that quotes a typed or read value uses it.
 *
 * @example showValue('x'.repeat(100_000)) // the first 80 x's, quoted, then "…"
 */
export function showValue(text: string, max = SHOWN_LENGTH): string {
  return '"' + escapeControls(cut(text, max).replace(/["\\]/g, (c) => '\\' + c)) + '"'
}
