/**
 * Opens the configured output. The file output is the one there is; a second output adds its branch
 * here, chosen by its config section.
 */
import {KeystoreError} from '../../core/errors.js'
import type {ServerConfig} from '../config/server-config.js'
import {FileOutput} from './file.js'
import type {Output} from './output.js'

/** The output `config` names, ready for events; ECONFIG, naming the setting, when it cannot be opened. */
export async function openOutput(config: ServerConfig['output']): Promise<Output> {
  try {
    return await FileOutput.open(config)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new KeystoreError('ECONFIG', `cannot open the output file in ${config.path}: ${code ?? (error as Error).message}; check output.file.path and its permissions`)
  }
}
