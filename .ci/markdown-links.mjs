// Reads the relative links and the heading anchors of a Markdown page, for the docs check.

/** The page's lines outside fenced code blocks, with their 1-based numbers. */
function proseLines(text) {
  let fenced = false;
  return text.split('\n').flatMap((line, index) => {
    if (line.startsWith('```')) {
      fenced = !fenced;
      return [];
    }
    return fenced ? [] : [{ line: index + 1, text: line }];
  });
}

/** Every `[text](target)` whose target is on this site (no scheme), outside code. */
export function linksOf(text) {
  return proseLines(text).flatMap(({ line, text: prose }) =>
    [...prose.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)]
      .map((match) => match[1])
      .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target))
      .map((target) => ({ target, line })),
  );
}

/** The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces to `-`, repeats numbered. */
export function anchorsOf(text) {
  const anchors = new Set();
  for (const { text: prose } of proseLines(text)) {
    const heading = /^#{1,6} (.*)$/.exec(prose)?.[1];
    if (heading === undefined) continue;
    const slug = heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '').replace(/ /g, '-');
    let anchor = slug;
    for (let n = 1; anchors.has(anchor); n += 1) anchor = `${slug}-${n}`;
    anchors.add(anchor);
  }
  return anchors;
}
