// ESLint for the web UI: plain ES modules served as they are (no bundler), run in the browser.
// scripts/lint.sh installs the pinned tooling with `npm ci` and runs it.
import js from "@eslint/js";
import globals from "globals";

// The tooling lives in its own folder; run from internal/web with --config (which makes the
// working directory the base path), it checks the modules under static/.
export default [
  { ...js.configs.recommended, files: ["static/**/*.js"] },
  {
    files: ["static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: globals.browser,
    },
    rules: {
      // Defects the recommended set leaves out.
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-implicit-globals": "error",
      "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
];
