// ESLint for the TypeScript and the few JavaScript files, type-aware through tsconfig.json.
// Formatting is Prettier's (.prettierrc.json): no style rules here.
import eslint from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig(
  globalIgnores(['build/', 'dist/', 'node_modules/', 'bench/results/']),
  eslint.configs.recommended,
  // Not strictTypeChecked: most of what it adds fights the code's deliberate habits (numbers in
  // template strings, `!` after a checked index under noUncheckedIndexedAccess, `() => void` arrows).
  tseslint.configs.recommendedTypeChecked,
  { languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } } },
  {
    rules: {
      // node:test runs describe/it/test itself and reports their failures: their promises are not the caller's.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test'] }] },
      ],
      // Properties left out of a rest object, and a loop that only counts, are unused on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, varsIgnorePattern: '^_' }],
      // Off: an async function without await implements a Promise-returning interface, and turns a throw into a rejection.
      '@typescript-eslint/require-await': 'off',
      // A caught error or an abort reason is passed on as it came, as only-throw-error allows for throw.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
    },
  },
  // Outside tsconfig.json: no types to check them with, and no @types/node to declare Node's globals
  // (the TypeScript gets them from there); these scripts use two.
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
  },
);
