/**
 * Permissions: after every writing command (create, add, remove, passwd set/change/remove, upgrade of
 * both formats, create --force) the keystore is 0600 and every directory the CLI created is 0700, under
 * umask 022 and under umask 000. A keystore open to group/others, or owned by another user (created
 * here with useradd when running as root), is refused; --strict.perms=false lets it through.
 */
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {promisify} from 'node:util'

import {CheckResult, cli, fail, newResult, oneErrorLine, shell, tempDir} from './lib.js'

const run = promisify(execFile)
const PASSWORD = 'pw-perms-1'

/** `full: false` (the fast test): umask 000 only, and one open mode. */
export async function checkPermissions(options: {full: boolean}): Promise<CheckResult> {
  const result = newResult()
  for (const umask of options.full ? ['022', '000'] : ['000']) {
    // eslint-disable-next-line no-await-in-loop -- one umask at a time
    await modesAfterEveryCommand(umask, options.full, result)
  }

  await refusals(options.full ? [0o644, 0o640, 0o604, 0o660, 0o666, 0o620, 0o602] : [0o644], result)
  await otherUser(result)
  return result
}

async function modesAfterEveryCommand(umask: string, full: boolean, result: CheckResult): Promise<void> {
  const tmp = tempDir()
  let checked = 0
  try {
    // A nested data path: every level the CLI creates must be 0700.
    const data = path.join(tmp.dir, 'deep', 'er', 'data')
    const file = path.join(data, 'apm-server.keystore')
    const flags = `--path.data ${data}`
    const steps: Array<[string, string?]> = [
      ['keystore create'],
      ['keystore add A --stdin', 'value-a'],
      ['keystore add A --stdin --force', 'value-a2'],
      ['keystore add B C --stdin', 'b\nc\n'],
      ['keystore remove B'],
      ['keystore passwd --stdin', `${PASSWORD}\n`],
      ['keystore passwd --stdin', `${PASSWORD}-2\n`],
      ['keystore passwd --remove'],
      ['keystore upgrade'],
      ['keystore create --format beats-v1 --force'],
      ['keystore add D --stdin', 'd'],
      ['keystore upgrade'],
      ['keystore create --password --force'],
      ['keystore add E --generate'],
    ]
    // The fast test: each command once (create, add, remove, passwd set and remove, upgrade from Beats).
    const fast = new Set([0, 3, 4, 5, 7, 9, 11])
    let password = PASSWORD
    for (const [command, input] of full ? steps : steps.filter((_, i) => fast.has(i))) {
      // eslint-disable-next-line no-await-in-loop -- commands build on each other
      const out = await shell(`umask ${umask}; exec $APM ${command} ${flags}`, {cwd: tmp.dir, env: {APM_SERVER_KEYSTORE_PASSWORD: password}, input})
      if (command === 'keystore passwd --stdin' && input) password = input.trim()
      if (out.code !== 0) {
        fail(result, `permissions (umask ${umask}): "${command}" exited ${out.code}: ${out.stderr.trim()}`)
        continue
      }

      checked++
      // eslint-disable-next-line no-await-in-loop -- check after each command
      const mode = (await fs.stat(file)).mode & 0o777
      if (mode !== 0o600) fail(result, `permissions (umask ${umask}): keystore is ${mode.toString(8)} after "${command}", expected 600`)
      // eslint-disable-next-line no-await-in-loop -- check after each command
      const trailMode = (await fs.stat(`${file}.audit`)).mode & 0o777
      if (trailMode !== 0o600) fail(result, `permissions (umask ${umask}): audit trail is ${trailMode.toString(8)} after "${command}", expected 600`)
      for (const dir of [path.join(tmp.dir, 'deep'), path.join(tmp.dir, 'deep', 'er'), data]) {
        // eslint-disable-next-line no-await-in-loop -- check after each command
        const dirMode = (await fs.stat(dir)).mode & 0o777
        if (dirMode !== 0o700) fail(result, `permissions (umask ${umask}): directory ${path.relative(tmp.dir, dir)} is ${dirMode.toString(8)} after "${command}", expected 700`)
      }
    }
  } finally {
    tmp.cleanup()
  }

  result.figures.push({check: 'permissions', figure: `umask ${umask}: file and created dirs after create/add/remove/passwd×3/upgrade×2/create --force`, value: `${checked} commands, ${result.failures.length === 0 ? 'all 0600 / 0700' : 'SEE FAILURES'}`})
}

async function refusals(modes: number[], result: CheckResult): Promise<void> {
  let refused = 0
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    await cli(['keystore', 'create'], {cwd})
    await cli(['keystore', 'add', 'A', '--stdin'], {cwd, input: 'a'})
    const file = path.join(cwd, 'data', 'apm-server.keystore')
    for (const mode of modes) {
      // eslint-disable-next-line no-await-in-loop -- one mode at a time
      await fs.chmod(file, mode)
      // eslint-disable-next-line no-await-in-loop -- one mode at a time
      const before = await fs.readFile(file)
      // eslint-disable-next-line no-await-in-loop -- one mode at a time
      const [list, add, lax, laxEnv] = await Promise.all([
        cli(['keystore', 'list'], {cwd}),
        cli(['keystore', 'add', 'B', '--stdin'], {cwd, input: 'b'}),
        cli(['keystore', 'list', '--strict.perms=false'], {cwd}),
        cli(['keystore', 'list'], {cwd, env: {BEAT_STRICT_PERMS: 'false'}}),
      ])
      const shown = mode.toString(8).padStart(4, '0')
      const good =
        list.code === 1 &&
        oneErrorLine(list.stderr) &&
        list.stderr.includes(shown) &&
        list.stderr.includes('chmod 600') &&
        add.code === 1 &&
        lax.code === 0 &&
        lax.stdout === 'A\n' &&
        laxEnv.code === 0
      // eslint-disable-next-line no-await-in-loop -- one mode at a time
      const unchanged = (await fs.readFile(file)).equals(before)
      if (good && unchanged) refused++
      else fail(result, `permissions: mode ${shown}: list exit ${list.code} (${list.stderr.trim()}), add exit ${add.code}, --strict.perms=false exit ${lax.code}, BEAT_STRICT_PERMS=false exit ${laxEnv.code}, file ${unchanged ? 'unchanged' : 'CHANGED'}`)
    }
  } finally {
    tmp.cleanup()
  }

  result.figures.push({check: 'permissions', figure: `keystore open to group/others (${modes.map((m) => m.toString(8)).join(', ')})`, value: `${refused}/${modes.length} refused by list and add, naming the mode and "chmod 600"; accepted with --strict.perms=false`})
}

async function otherUser(result: CheckResult): Promise<void> {
  if (process.getuid?.() !== 0) {
    result.skipped.push('keystore owned by another user: needs root to create the user (useradd) and chown the file')
    return
  }

  const user = `apmt${randomBytes(3).toString('hex')}`
  try {
    await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user])
  } catch (error) {
    result.skipped.push(`keystore owned by another user: useradd failed (${(error as Error).message.split('\n')[0]})`)
    return
  }

  const tmp = tempDir()
  try {
    const {stdout} = await run('id', ['-u', user])
    const uid = Number(stdout.trim())
    const cwd = tmp.dir
    await cli(['keystore', 'create'], {cwd})
    await cli(['keystore', 'add', 'A', '--stdin'], {cwd, input: 'a'})
    const file = path.join(cwd, 'data', 'apm-server.keystore')
    await fs.chown(file, uid, uid)
    const [list, add, lax] = await Promise.all([
      cli(['keystore', 'list'], {cwd}),
      cli(['keystore', 'add', 'B', '--stdin'], {cwd, input: 'b'}),
      cli(['keystore', 'list', '--strict.perms=false'], {cwd}),
    ])
    const refused = list.code === 1 && oneErrorLine(list.stderr) && list.stderr.includes(`uid ${uid}`) && add.code === 1 && lax.code === 0
    if (!refused) fail(result, `permissions: keystore owned by ${user} (uid ${uid}): list exit ${list.code} (${list.stderr.trim()}), add exit ${add.code}, --strict.perms=false exit ${lax.code}`)
    // Root changing that user's keystore starts its audit trail as that user's, as the keystore stays theirs.
    await fs.rm(`${file}.audit`, {force: true})
    const rootAdd = await cli(['keystore', 'add', 'C', '--stdin', '--strict.perms=false'], {cwd, input: 'c'})
    const trailOwner = (await fs.stat(`${file}.audit`).catch(() => undefined))?.uid
    if (rootAdd.code !== 0 || trailOwner !== uid || (await fs.stat(file)).uid !== uid) {
      fail(result, `permissions: root adding to ${user}'s keystore: exit ${rootAdd.code} (${rootAdd.stderr.trim()}), audit trail owned by uid ${trailOwner}, expected ${uid}`)
    }

    // The other user, running the CLI against root's 0600 keystore: a clear error, no stack trace.
    await fs.chown(file, 0, 0)
    await fs.chmod(tmp.dir, 0o755)
    await fs.chmod(path.dirname(file), 0o755)
    const asOther = await cli(['keystore', 'list'], {cwd, env: {HOME: cwd}, uid})
    const clear = asOther.code === 1 && oneErrorLine(asOther.stderr) && asOther.stderr.includes('EACCES')
    if (!clear) fail(result, `permissions: ${user} reading root's 0600 keystore: exit ${asOther.code}, stderr ${JSON.stringify(asOther.stderr.slice(0, 300))}`)
    result.figures.push({
      check: 'permissions',
      figure: `keystore owned by another user (created with useradd: ${user})`,
      value: `${refused ? 'refused' : 'NOT refused'} by list and add, naming the uid; accepted with --strict.perms=false (root's change keeps the keystore and starts the audit trail as that user's); that user reading root's 0600 file: ${clear ? 'one clear EACCES error' : 'UNCLEAR'}`,
    })
  } finally {
    tmp.cleanup()
    await run('userdel', [user]).catch(() => {})
  }
}
