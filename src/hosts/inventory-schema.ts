/**
 * JSON Schema of host inventories (`harness/hosts.*.yaml`). Published as
 * harness/schema/hosts.schema.json (`cbt-harness hosts schema` prints it; a test keeps the two
 * equal). `description` doubles as the phrase in "Expected `field` to be <description>".
 */

const NAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$', description: 'a name of letters, digits, `.`, `_` and `-` (at most 63 characters)' } as const;
const FINGERPRINT = { type: 'string', pattern: '^SHA256:[A-Za-z0-9+/]{43}$', description: 'an OpenSSH host key fingerprint like `SHA256:` followed by 43 base64 characters (`ssh-keygen -lf KEY.pub`)' } as const;
const ABS_PATH = { type: 'string', pattern: '^/', minLength: 2, description: 'an absolute path' } as const;
const PORT = { type: 'integer', minimum: 1, maximum: 65535 } as const;

const common = {
  name: NAME,
  slots: { type: 'integer', minimum: 1, maximum: 1024, description: 'jobs that may run at the same time on this host' },
  tags: { type: 'array', items: NAME, uniqueItems: true, description: 'capabilities jobs can require' },
} as const;

function hostBranch(type: string, properties: Record<string, unknown>, required: string[]): Record<string, unknown> {
  return {
    type: 'object',
    properties: { type: { const: type }, ...common, ...properties },
    required: ['name', 'type', 'slots', ...required],
    additionalProperties: false,
  };
}

export const HOSTS_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://cbt-harness.dev/schema/hosts.schema.json',
  title: 'cbt-harness host inventory',
  type: 'object',
  properties: {
    $schema: { type: 'string' },
    hosts: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        properties: { type: { enum: ['local', 'ssh', 'docker'] } },
        required: ['type'],
        discriminator: { propertyName: 'type' },
        oneOf: [
          hostBranch('local', { workdir: { ...ABS_PATH, description: 'an absolute path (job folders and the image cache; default <tmpdir>/cbt-harness)' } }, []),
          hostBranch(
            'ssh',
            {
              address: { type: 'string', minLength: 1, description: 'a host name or IP address' },
              port: { ...PORT, default: 22 },
              user: { type: 'string', minLength: 1, default: 'root' },
              identity: { type: 'string', minLength: 1, description: 'the path of a private key file' },
              hostKey: { anyOf: [FINGERPRINT, { type: 'array', items: FINGERPRINT, minItems: 1 }], description: 'an OpenSSH host key fingerprint like `SHA256:` followed by 43 base64 characters (`ssh-keygen -lf KEY.pub`), or a list of them; a host presenting another key is refused' },
              workdir: { ...ABS_PATH, default: '/var/lib/cbt-harness' },
              connectTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, default: 20000 },
            },
            ['address', 'identity', 'hostKey'],
          ),
          hostBranch(
            'docker',
            {
              docker: {
                type: 'object',
                description: 'how to reach the engine: `socketPath`, or `host`/`port` with `protocol` http, https (with `ca`/`cert`/`key`) or ssh (with `username`, `identity`, `hostKey`)',
                properties: {
                  socketPath: { type: 'string', minLength: 1 },
                  protocol: { enum: ['http', 'https', 'ssh'] },
                  host: { type: 'string', minLength: 1 },
                  port: PORT,
                  username: { type: 'string', minLength: 1 },
                  identity: { type: 'string', minLength: 1 },
                  hostKey: { anyOf: [FINGERPRINT, { type: 'array', items: FINGERPRINT, minItems: 1 }] },
                  ca: { type: 'string', minLength: 1 },
                  cert: { type: 'string', minLength: 1 },
                  key: { type: 'string', minLength: 1 },
                },
                additionalProperties: false,
              },
              image: { type: 'string', minLength: 1, default: 'cbt-harness-worker:latest' },
              cacheVolume: { ...NAME, default: 'cbt-harness-cache' },
              kvm: { enum: ['auto', 'always', 'never'], default: 'auto' },
              labels: { type: 'object', additionalProperties: { type: 'string' } },
            },
            ['docker'],
          ),
        ],
      },
    },
  },
  required: ['hosts'],
  additionalProperties: false,
} as const;
