/**
 * A tiny XML tree and serializer: text and attribute values are escaped, and characters XML 1.0
 * cannot carry (controls other than tab/newline/return, lone surrogates, U+FFFE/U+FFFF) are
 * replaced, so stderr or a scenario name can never break the document.
 */

export interface XmlElement {
  name: string;
  attrs?: Record<string, string | number | boolean | undefined>;
  children?: Array<XmlElement | string>;
}

// Not allowed in XML 1.0 documents (https://www.w3.org/TR/xml/#charsets).
// eslint-disable-next-line no-control-regex
const INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function xmlSafe(text: string): string {
  return text.replace(INVALID, '\uFFFD');
}

export function escapeText(text: string): string {
  return xmlSafe(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function escapeAttr(text: string): string {
  // Newlines and tabs as character references: a parser would normalize literal ones to spaces.
  return escapeText(text).replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
}

export function el(name: string, attrs?: XmlElement['attrs'], children?: Array<XmlElement | string | undefined | false>): XmlElement {
  return { name, attrs, children: children?.filter((c): c is XmlElement | string => c !== undefined && c !== false) };
}

function render(node: XmlElement, indent: string, out: string[]): void {
  let open = `${indent}<${node.name}`;
  for (const [k, v] of Object.entries(node.attrs ?? {})) if (v !== undefined) open += ` ${k}="${escapeAttr(String(v))}"`;
  const kids = node.children ?? [];
  if (kids.length === 0) {
    out.push(`${open}/>`);
    return;
  }
  if (kids.every((k) => typeof k === 'string')) {
    // Text content stays on one line with the tags: indentation would change it.
    out.push(`${open}>${kids.map((k) => escapeText(k as string)).join('')}</${node.name}>`);
    return;
  }
  out.push(`${open}>`);
  for (const k of kids) {
    if (typeof k === 'string') out.push(escapeText(k));
    else render(k, `${indent}  `, out);
  }
  out.push(`${indent}</${node.name}>`);
}

export function renderXml(root: XmlElement): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  render(root, '', out);
  return `${out.join('\n')}\n`;
}
