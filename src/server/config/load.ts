/**
 * Loading the server's configuration, start to end: the settings from the file, `-E` and the flags
 * (./sources.ts), every `${KEY}` resolved from the keystore and then the environment (./resolve.ts),
 * checked against the settings table and typed (./build.ts), held to the fail-closed rules
 * (./policy.ts), and redacted for display (./redact.ts).
 *
 * `${path.home}`, `${path.config}`, `${path.data}` and `${path.logs}` name the resolved paths (as in Beats)
 * and are looked up before the keystore. The path settings and `keystore.path` are resolved first, from
 * the environment only: they decide where the keystore is.
 *
 * Every problem is collected and reported at once, each naming file:line (or the -E/flag it came from)
 * and the setting. No problem or warning ever holds a value: values may be secrets.
 *
 * Fail closed: a secret token setting that is present but resolves to nothing is a problem, and so is a
 * keystore that exists but cannot be opened when a reference needs it. A missing keystore holds no keys.
 */
import {clockOf} from '../../core/expiry.js'
import {buildConfig, turnedOff} from './build.js'
import {checkOverridesKeepAuth, reloadRefusals} from './policy.js'
import {ReferenceLog} from './provenance.js'
import {redactedTree} from './redact.js'
import {describeKeystoreError, resolveOthers, resolvePathSettings} from './resolve.js'
import {capNotes, ConfigError, LoadedConfig, LoadOptions} from './server-config.js'
import {LEGACY_TOKEN, Note, PATH_SETTINGS, Resolved, Setting, TOKEN} from './settings.js'
import {collectSettings, locateConfigFile, SettingList} from './sources.js'

/**
 * Loads and resolves the configuration. Throws {@link ConfigError} listing every problem at once
 * (keystore problems reported as such, their code in `keystoreCode`), or KeystoreError EUSAGE for a
 * malformed -E and ECANCELED when a password prompt is interrupted. Never logs.
 */
export async function loadServerConfig(options: LoadOptions): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd()
  const file = locateConfigFile(options.flags, cwd)
  const {fileState, problems, settings, warnings} = await collectSettings(file, options)
  if (problems.length > 0) throw new ConfigError(problems, warnings)

  // Paths first: they decide where the keystore is, so they can use the environment and ${path.*} only.
  const resolved = new Map<string, Resolved>()
  const pathLog = new ReferenceLog()
  const paths = resolvePathSettings(settings, options, cwd, problems, resolved, pathLog)
  if (problems.length > 0) throw new ConfigError(problems, warnings)
  const clock = options.now === undefined ? clockOf(options.env) : {now: options.now}
  if (clock.warning) warnings.push(clock.warning)

  const others = settings.items.filter((setting) => !(PATH_SETTINGS as readonly string[]).includes(setting.name))
  const {environment, expiryOf, keystoreError, keystoreKeys, pass} = await resolveOthers(others, paths.builtinLookup, paths.keystoreFile, options)
  if (keystoreError) {
    // What the keystore would have resolved is unknown: report only what does not depend on it.
    problems.push(...pass.reports.filter((report) => !report.fromLookup).map((report) => report.message))
    problems.push(describeKeystoreError(keystoreError))
    throw new ConfigError(problems, warnings, keystoreError)
  }

  // From here on, problems and warnings are listed in the order the settings were written.
  const late = new NotesInOrder(settings)
  const lateWarnings = new NotesInOrder(settings)
  for (const report of pass.reports) late.note(report.setting, report.message)
  for (const value of pass.values) resolved.set(value.setting.name, value)
  const notes = {problem: late.note, warn: lateWarnings.note}
  // In the order the settings were written, as the notes are.
  const references = [...pathLog.finish(environment, expiryOf, clock.now, notes), ...pass.log.finish(environment, expiryOf, clock.now, notes)]
    .map((reference, i) => ({at: settings.items.indexOf(reference.from), i, reference}))
    .sort((a, b) => a.at - b.at || a.i - b.i)
    .map(({reference: {from: _from, ...reference}}) => reference)
  const {configDir, data, home, keystoreFile, logs} = paths
  const config = await buildConfig({configDir, cwd, data, home, logs, problem: late.note, resolved, warn: lateWarnings.note})
  checkOverridesKeepAuth(settings, config, late.note)
  problems.push(...late.messages())
  warnings.push(...lateWarnings.messages())
  if (problems.length === 0 && options.reloadOf) problems.push(...reloadRefusals(options.reloadOf.config, config))
  if (problems.length > 0) throw Object.assign(new ConfigError(problems, warnings), {keystore: keystoreFile, references})
  const tokenOffBy = [TOKEN, LEGACY_TOKEN].map((name) => resolved.get(name)).find((entry) => entry && turnedOff(entry))?.setting.where
  const shown = capNotes(warnings, 'warnings')
  return {config, file, fileState, keystore: keystoreFile, keystoreKeys, redacted: redactedTree(settings, resolved), references, warnings: shown, ...(tokenOffBy ? {tokenOffBy} : {})}
}

/** Notes about settings, listed in the order the settings were written (notes about no setting last). */
class NotesInOrder {
  private readonly notes: Array<{at: number; message: string}> = []

  constructor(private readonly settings: SettingList) {}

  readonly note: Note = (setting: Setting | undefined, message: string) => {
    this.notes.push({at: setting ? this.settings.indexOf(setting) : this.settings.items.length, message})
  }

  messages(): string[] {
    // Array.prototype.sort is stable: notes about one setting keep their order.
    return this.notes.sort((a, b) => a.at - b.at).map((note) => note.message)
  }
}
