// Regenerates src/generated from proto/*.proto with buf + ts-proto (both shipped inside npm).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';

rmSync(new URL('../src/generated', import.meta.url), { recursive: true, force: true });
execFileSync('npx', ['buf', 'generate'], { stdio: 'inherit', cwd: new URL('..', import.meta.url) });
