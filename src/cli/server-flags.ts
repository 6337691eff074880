/**
 * The flags shared by the commands that load the server configuration (`run`, `test config`, `export
 * config`): a plain object to spread into a command's `static flags`. Turning them into load options is
 * the server's side (src/server/config/options.ts): the CLI layer never imports the server.
 */
import {Flags} from '@oclif/core'

export const serverFlags = {
  E: Flags.string({
    char: 'E',
    description: 'override a setting, e.g. -E apm-server.host=0.0.0.0:8200 (repeatable; the value is YAML, a mapping is merged into the section; ${KEY} references are resolved)',
    helpValue: 'key=value',
    multiple: true,
    multipleNonGreedy: true,
  }),
}
