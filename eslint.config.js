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
  // Outside tsconfig.json: no types to check them with.
  { files: ['**/*.js', '**/*.mjs'], extends: [tseslint.configs.disableTypeChecked] },
);
