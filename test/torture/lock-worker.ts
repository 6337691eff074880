/**
 * Child process of the stale-lock storm: loads the core once, then for each job waits for a shared
 * wall-clock instant (busy-waiting, so all workers leave within a millisecond) and adds one key through
 * `updateKeystore`. Starting together is what makes them find the same stale lock at the same moment.
 *
 * Protocol (IPC): receives {file, name, at}; answers {ok: true} or {error: string}; {exit: true} ends.
 */
import {updateKeystore} from '../../src/core/keystore.js'

interface Job {
  file: string
  name: string
  at: number
  exit?: boolean
}

process.on('message', (job: Job) => {
  if (job.exit) process.exit(0)
  while (Date.now() < job.at) {
    // Busy-wait on purpose: a timer would add up to a few ms of jitter between the workers.
  }

  updateKeystore(job.file, {lockTimeoutMs: 30_000}, (keystore) => {
    keystore.set(job.name, Buffer.from(job.name))
  }).then(
    () => process.send?.({ok: true}),
    (error: Error) => process.send?.({error: `${(error as {code?: string}).code ?? error.name}: ${error.message}`}),
  )
})
process.send?.({ready: true})
