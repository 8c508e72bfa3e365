// A storage driver's variables as config.ts cleans them, for tests that open a target directly.
import { cleanEnv } from 'envalid';
import type { EnvSpecs, EnvValues } from '../../src/config-specs.ts';
import type { StorageDriver } from '../../src/storage/types.ts';

// The driver's typed settings from `vars`; a bad value throws, naming the variable, instead of exiting.
export function settingsFrom<S extends EnvSpecs>(driver: StorageDriver<S>, vars: Record<string, string>): EnvValues<S> {
  return cleanEnv(vars, driver.env, {
    reporter: ({ errors }) => {
      if (Object.keys(errors).length > 0) throw new Error(Object.keys(errors).join(', '));
    },
  });
}
