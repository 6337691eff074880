/**
 * Opens the configured output: the file output (the embedded default), or the Redis output when
 * `output.redis` is the enabled one. The Redis output, and its client library, are loaded only then.
 */
import {KeystoreError} from '../../core/errors.js'
import type {ServerConfig} from '../config/server-config.js'
import type {Logger} from '../logger.js'
import {FileOutput} from './file.js'
import type {Output} from './output.js'

/** The output `config` names, ready for events; ECONFIG, naming the setting, when it cannot be opened. */
export async function openOutput(config: ServerConfig['output'], logger: Logger): Promise<Output> {
  if (config.redis) {
    const {RedisOutput} = await import('./redis.js')
    return RedisOutput.open(config.redis, logger)
  }

  try {
    return await FileOutput.open(config)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new KeystoreError('ECONFIG', `cannot open the output file in ${config.path}: ${code ?? (error as Error).message}; check output.file.path and its permissions`)
  }
}
