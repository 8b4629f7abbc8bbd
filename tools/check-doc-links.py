#!/usr/bin/env python3
"""Check that every pointer into the maintainer docs resolves.

Two kinds of reference are checked:

  * every mention of docs/<name>.md, with or without #anchor, in any
    tracked text file of the repository (code comments, README.md, the
    Makefile, bench/, tools/, docs/ itself): the file must exist and the
    anchor must be a heading of that file;
  * every relative Markdown link [text](target) in README.md and in
    docs/*.md (and bench/README.md): the target file must exist, and an
    #anchor must be a heading of the target (or of the file itself for a
    bare #anchor).

Anchors follow GitHub's rule: the heading text lower-cased, every
character other than letters, digits, spaces, hyphens and underscores
dropped, spaces turned to hyphens; a repeated heading gets -1, -2, ... in
order of appearance. Markdown links, emphasis and code marks in a heading
count by their text. Headings inside fenced code blocks do not count.

Usage: tools/check-doc-links.py [REPO_ROOT]
Prints each broken reference as FILE:LINE: reference: reason, and exits 1
if there is any; prints a one-line count and exits 0 otherwise.
"""

import os
import re
import subprocess
import sys

HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
FENCE = re.compile(r'^\s*(```|~~~)')
DOCS_REF = re.compile(r'(?<![\w/.-])((?:\.\./)*docs/[A-Za-z0-9_.-]+\.md)(#[A-Za-z0-9_-]*)?')
MD_LINK = re.compile(r'\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
SKIP_EXT = ('.png', '.jpg', '.gz', '.xz', '.o', '.a', '.so', '.ko', '.bin')


def slug(text):
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text)  # links: keep text
    text = re.sub(r'<[^>]+>', '', text)                      # inline HTML
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)                     # drop punctuation
    return text.replace(' ', '-')


def anchors(path, cache={}):
    """The set of anchors a Markdown file's headings define."""
    if path in cache:
        return cache[path]
    seen, out, fenced = {}, set(), False
    with open(path, encoding='utf-8', errors='replace') as f:
        for line in f:
            if FENCE.match(line):
                fenced = not fenced
                continue
            m = None if fenced else HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            out.add(base if n == 0 else '%s-%d' % (base, n))
            seen[base] = n + 1
    cache[path] = out
    return out


def repo_files(root):
    """Tracked files (git ls-files), or a walk when git is not there."""
    try:
        out = subprocess.run(['git', '-C', root, 'ls-files', '-z'],
                             capture_output=True, check=True).stdout
        files = [p for p in out.decode().split('\0') if p]
        if files:
            return [p for p in files if os.path.isfile(os.path.join(root, p))]
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x not in ('.git', 'build')]
        files += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return files


def check_target(root, target_rel, anchor, where, ref, errors):
    """target_rel: repository-relative file path; anchor without '#'."""
    path = os.path.normpath(os.path.join(root, target_rel))
    if not os.path.isfile(path) and not os.path.isdir(path):
        errors.append('%s: %s: no such file %s' % (where, ref, target_rel))
        return
    if anchor and path.endswith('.md') and anchor not in anchors(path):
        errors.append('%s: %s: no heading #%s in %s' % (where, ref, anchor, target_rel))


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), '..'))
    errors, count = [], 0
    for rel in sorted(repo_files(root)):
        if rel.endswith(SKIP_EXT) or rel.startswith('build/'):
            continue
        try:
            with open(os.path.join(root, rel), encoding='utf-8') as f:
                lines = f.read().split('\n')
        except (UnicodeDecodeError, OSError):
            continue
        is_md = rel.endswith('.md') and (rel == 'README.md' or rel.startswith('docs/')
                                         or rel == 'bench/README.md')
        fenced = False
        for i, line in enumerate(lines, 1):
            where = '%s:%d' % (rel, i)
            if is_md and FENCE.match(line):
                fenced = not fenced
            spans = []
            if is_md and not fenced:
                for m in MD_LINK.finditer(line):
                    t = m.group(1)
                    spans.append(m.span())
                    if re.match(r'^[a-z][a-z0-9+.-]*:', t):   # http:, mailto:
                        continue
                    count += 1
                    f, _, a = t.partition('#')
                    target = os.path.normpath(os.path.join(os.path.dirname(rel), f)) if f else rel
                    check_target(root, target, a, where, t, errors)
            for m in DOCS_REF.finditer(line):
                if any(s <= m.start() < e for s, e in spans):
                    continue    # already checked as a Markdown link
                count += 1
                f, a = m.group(1), (m.group(2) or '#')[1:]
                target = f[f.index('docs/'):]
                check_target(root, target, a, where, m.group(0), errors)
    for e in errors:
        print(e)
    print('%d doc references checked, %d broken' % (count, len(errors)))
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
