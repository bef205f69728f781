import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { DOCS_BEGIN, DOCS_END, renderOptionsMarkdown, withOptionsReference } from '../../../../src/cli/options/docs.js';
import { flagLabel, HELP_ALL_FLAG, renderCommandHelp } from '../../../../src/cli/options/help.js';
import { configObject, REDACTED, renderConfig } from '../../../../src/cli/options/print-config.js';
import { resolveOptions, type ResolvedOptions } from '../../../../src/cli/options/resolve.js';
import { OptionValueError, readValue, type CommandSchema, type OptionSpec } from '../../../../src/cli/options/spec.js';
import { ALL_SCHEMAS, DOCUMENTED_SCHEMAS } from '../../../../src/cli/schemas/all.js';
import { CONNECT_SCHEMA } from '../../../../src/cli/schemas/connect.js';
import { SERVE_SCHEMA } from '../../../../src/cli/schemas/serve.js';

type Values = Record<string, unknown>;

/** The repository root: this file runs as dist/test/unit/cli/options/schemas.test.js. */
const ROOT = new URL('../../../../../', import.meta.url);

const WIDTH = 100;

/** Length in characters (code points), which is what a terminal column count follows here, not bytes. */
function columns(line: string): number {
  return [...line].length;
}

/** The help lines that list `spec` as an option (its label at the start of the line). */
function labelLines(help: string, spec: OptionSpec): string[] {
  const label = `  ${flagLabel(spec)}`;
  return help.split('\n').filter((l) => l.startsWith(label) && (l.length === label.length || l[label.length] === ' '));
}

describe('command help', () => {
  for (const schema of ALL_SCHEMAS) {
    describe(schema.command, () => {
      const short = renderCommandHelp(schema, { all: false, width: WIDTH });
      const all = renderCommandHelp(schema, { all: true, width: WIDTH });

      it(`short help is at most 45 lines of at most ${WIDTH} characters`, () => {
        const lines = short.trimEnd().split('\n');
        assert.ok(lines.length <= 45, `${lines.length} lines:\n${short}`);
        for (const line of lines) assert.ok(columns(line) <= WIDTH, `${columns(line)} characters: ${line}`);
      });

      it(`--help-all lines are at most ${WIDTH} characters`, () => {
        for (const line of all.split('\n')) assert.ok(columns(line) <= WIDTH, `${columns(line)} characters: ${line}`);
      });

      it('--help-all lists every option exactly once', () => {
        for (const spec of schema.options) assert.equal(labelLines(all, spec).length, 1, `--${spec.name} in:\n${all}`);
      });

      it('short help lists every everyday option once, no advanced one, and names --help-all', () => {
        for (const spec of schema.options) assert.equal(labelLines(short, spec).length, spec.advanced ? 0 : 1, `--${spec.name}`);
        assert.ok(short.includes(`udp-tunnel ${schema.command} ${HELP_ALL_FLAG}`));
      });

      it('--help-all names the environment variable of each option that has one', () => {
        for (const spec of schema.options.filter((o) => o.env !== undefined)) assert.ok(all.replace(/\s+/g, ' ').includes(`env ${spec.env}`), spec.name);
      });
    });
  }
});

describe('docs/<command>.md options reference', () => {
  for (const schema of DOCUMENTED_SCHEMAS) {
    it(`docs/${schema.command}.md is what npm run docs:options generates`, () => {
      const text = readFileSync(new URL(`docs/${schema.command}.md`, ROOT), 'utf8');
      assert.ok(text.includes(DOCS_BEGIN) && text.includes(DOCS_END), `docs/${schema.command}.md lacks the options markers; run \`npm run docs:options\``);
      assert.ok(text.indexOf(DOCS_BEGIN) < text.indexOf(DOCS_END));
      const regenerated = withOptionsReference(text, schema);
      assert.ok(
        regenerated === text,
        `docs/${schema.command}.md is out of date with src/cli/schemas/${schema.command}.ts; run \`npm run docs:options\` and commit the result`,
      );
    });

    it(`docs/${schema.command}.md names every option of ${schema.command}`, () => {
      const reference = renderOptionsMarkdown(schema);
      for (const spec of schema.options) assert.match(reference, new RegExp(`\\| \`(-\\w, )?--(\\[no-\\])?${spec.name}[ \`]`), spec.name);
    });
  }

  it('withOptionsReference replaces only the part between the markers', () => {
    const text = `# Title\n\nintro\n\n${DOCS_BEGIN}\nstale\n${DOCS_END}\n\nafter\n`;
    const next = withOptionsReference(text, CONNECT_SCHEMA)!;
    assert.ok(next.startsWith(`# Title\n\nintro\n\n${DOCS_BEGIN}\n`));
    assert.ok(next.endsWith(`\n${DOCS_END}\n\nafter\n`));
    assert.ok(!next.includes('stale'));
    assert.equal(withOptionsReference(next, CONNECT_SCHEMA), next, 'regenerating is stable');
    assert.equal(withOptionsReference('# no markers\n', CONNECT_SCHEMA), null);
  });
});

describe('schema sanity', () => {
  const RESERVED = ['help', 'help-all', 'version', 'h'];
  for (const schema of ALL_SCHEMAS) {
    describe(schema.command, () => {
      it('option names and short aliases are unique, kebab-case and not reserved', () => {
        const names = schema.options.map((o) => o.name);
        assert.deepEqual(names.filter((n, i) => names.indexOf(n) !== i), [], 'duplicate names');
        const shorts = schema.options.flatMap((o) => (o.short ? [o.short] : []));
        assert.deepEqual(shorts.filter((s, i) => shorts.indexOf(s) !== i), [], 'duplicate short aliases');
        for (const s of shorts) assert.match(s, /^[a-zA-Z]$/);
        for (const n of names) {
          assert.match(n, /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/, n);
          assert.ok(!RESERVED.includes(n), `${n} is handled before the schema`);
          assert.ok(!n.startsWith('no-'), `${n}: --no- is how a boolean is turned off`);
        }
        for (const s of shorts) assert.ok(!RESERVED.includes(s), `-${s} is -h`);
      });

      it('every option is in one of the groups, and every group has an option', () => {
        for (const spec of schema.options) assert.ok(schema.groups.includes(spec.group), `--${spec.name}: group '${spec.group}'`);
        for (const group of schema.groups) assert.ok(schema.options.some((o) => o.group === group), `group '${group}' is empty`);
      });

      it('every default is a valid value of its option, within its range', () => {
        for (const spec of schema.options) {
          if (spec.default === undefined) continue;
          let value: unknown;
          try {
            value = readValue(spec, spec.default);
          } catch (err) {
            assert.ok(err instanceof OptionValueError);
            assert.fail(`--${spec.name}: default ${JSON.stringify(spec.default)}: ${err.message}`);
          }
          if (typeof value === 'number') {
            if (spec.min !== undefined) assert.ok(value >= spec.min, `--${spec.name}: default ${value} < min ${spec.min}`);
            if (spec.max !== undefined) assert.ok(value <= spec.max, `--${spec.name}: default ${value} > max ${spec.max}`);
          }
        }
      });

      it('ranges, choices and units fit their kinds', () => {
        for (const spec of schema.options) {
          if (spec.min !== undefined && spec.max !== undefined) assert.ok(spec.min <= spec.max, spec.name);
          if (spec.min !== undefined || spec.max !== undefined) assert.ok(['int', 'number', 'size', 'duration'].includes(spec.kind), `--${spec.name}: a range on a ${spec.kind}`);
          assert.equal(spec.kind === 'choice', spec.choices !== undefined && spec.choices.length > 0, `--${spec.name}: choices`);
          if (spec.unit !== undefined) assert.equal(spec.kind, 'duration', spec.name);
          if (spec.commas) assert.equal(spec.kind, 'list', spec.name);
        }
      });

      it('every environment variable is UPPER_SNAKE', () => {
        for (const spec of schema.options) if (spec.env !== undefined) assert.match(spec.env, /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/, spec.name);
      });

      it('every example fits on one help line', () => {
        for (const ex of schema.examples) {
          assert.ok(columns(`  ${ex.cmd}`) <= WIDTH, ex.cmd);
          assert.ok(ex.cmd.startsWith(`udp-tunnel ${schema.command}`) || ex.cmd.includes(` udp-tunnel ${schema.command}`), ex.cmd);
        }
      });
    });
  }
});

describe('--print-config', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-print-config-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Renders `resolved` as YAML, drops the redacted keys and resolves the result again as a --config file. */
  async function roundTrip(schema: CommandSchema, resolved: ResolvedOptions<Values>, name: string): Promise<{ yaml: Values; again: ResolvedOptions<Values> }> {
    const text = await renderConfig(schema, resolved);
    const yaml = YAML.parse(text) as Values;
    assert.equal(typeof yaml, 'object');
    const isRedacted = (v: unknown): boolean => v === REDACTED || (Array.isArray(v) && v.length > 0 && v.every((x) => x === REDACTED));
    const fed = Object.fromEntries(Object.entries(yaml).filter(([, v]) => !isRedacted(v)));
    const path = join(dir, `${name}.yaml`);
    writeFileSync(path, YAML.stringify(fed));
    return { yaml, again: await resolveOptions<Values>(schema, ['--config', path], {}) };
  }

  /** The values of `schema` that a config file can carry, without secrets. */
  function plainValues(schema: CommandSchema, values: Values): Values {
    return Object.fromEntries(schema.options.filter((o) => !o.secret && !o.flagOnly && values[o.name] !== undefined).map((o) => [o.name, values[o.name]]));
  }

  it('connect: YAML that redacts the token, names origins and reads back to the same options', async () => {
    const file = join(dir, 'in.yaml');
    writeFileSync(file, 'target: 127.0.0.1:53\nidle-timeout: 90s\nheader: ["x-a: 1"]\n');
    const env = { UDP_TUNNEL_PROXY: 'http://127.0.0.1:4433', UDP_TUNNEL_TOKEN: 'tok-s3cret-value' };
    const argv = ['--config', file, '--max-sessions', '7', '--backoff-base', '250', '--max-buffered-bytes', '1.5k', '-H', 'x-b: 2', '--no-buffer'];
    const resolved = await resolveOptions<Values>(CONNECT_SCHEMA, argv, env);
    const text = await renderConfig(CONNECT_SCHEMA, resolved);
    assert.ok(!text.includes('tok-s3cret-value'), text);
    for (const line of text.split('\n')) assert.ok(columns(line) <= WIDTH || line.includes('http'), line);
    assert.match(text, /^token: <redacted> {2}# \$UDP_TUNNEL_TOKEN$/m);
    // --proxy is a list (several proxies fail over): one item.
    assert.match(text, /^proxy: {2}# \$UDP_TUNNEL_PROXY\n {2}- http:\/\/127\.0\.0\.1:4433$/m);
    assert.match(text, /^max-sessions: 7 {2}# --max-sessions$/m);
    assert.match(text, new RegExp(`^target: 127\\.0\\.0\\.1:53 {2}# ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    assert.match(text, /^backoff-base: 250ms {2}# --backoff-base$/m);
    assert.match(text, /^max-buffered-bytes: "?1536"? {2}# --max-buffered-bytes$/m);
    assert.match(text, /^# backoff-max:$/m, 'an option without a value is listed commented out');
    assert.doesNotMatch(text, /^#? ?(config|print-config|check):/m, 'flag-only options are no config keys');

    const { yaml, again } = await roundTrip(CONNECT_SCHEMA, resolved, 'connect');
    assert.equal(yaml['token'], REDACTED);
    assert.equal(yaml['idle-timeout'], '90s');
    assert.deepEqual(yaml['header'], ['x-b: 2']);
    assert.deepEqual(plainValues(CONNECT_SCHEMA, again.values), plainValues(CONNECT_SCHEMA, resolved.values));
    assert.equal(again.values['token'], undefined);
  });

  it('serve: every default reads back the same, and a token list is redacted only when set', async () => {
    const none = await resolveOptions<Values>(SERVE_SCHEMA, [], {});
    const { yaml, again } = await roundTrip(SERVE_SCHEMA, none, 'serve-defaults');
    assert.deepEqual(yaml['token'], [], 'no token: shown as an empty list, so its absence is visible');
    assert.deepEqual(plainValues(SERVE_SCHEMA, again.values), plainValues(SERVE_SCHEMA, none.values));

    const some = await resolveOptions<Values>(SERVE_SCHEMA, ['--token', 'tok-one-s3cret', '--allow', '10.0.0.0/8:53,127.0.0.1', '--max-capsule', '64k', '--idle-timeout', '0'], {});
    const text = await renderConfig(SERVE_SCHEMA, some);
    assert.ok(!text.includes('tok-one-s3cret'), text);
    const back = await roundTrip(SERVE_SCHEMA, some, 'serve-flags');
    assert.deepEqual(back.yaml['token'], [REDACTED], 'one redacted entry per token given');
    assert.equal(back.yaml['max-capsule'], '64KiB');
    assert.equal(back.yaml['idle-timeout'], '0s');
    assert.deepEqual(plainValues(SERVE_SCHEMA, back.again.values), plainValues(SERVE_SCHEMA, some.values));
  });

  it('--json form: the same values, secrets redacted, no flag-only keys', async () => {
    const resolved = await resolveOptions<Values>(CONNECT_SCHEMA, ['--proxy', 'http://127.0.0.1:1', '--token', 'tok-json-s3cret'], {});
    const obj = configObject(CONNECT_SCHEMA, resolved);
    assert.ok(!JSON.stringify(obj).includes('tok-json-s3cret'));
    assert.equal(obj['token'], REDACTED);
    assert.deepEqual(obj['proxy'], ['http://127.0.0.1:1']);
    assert.equal(obj['max-sessions'], resolved.values['max-sessions']);
    for (const key of ['config', 'print-config', 'check']) assert.ok(!(key in obj), key);
  });
});
