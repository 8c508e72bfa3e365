// STORAGE_TYPE → storage driver. Adding a type to STORAGE_TYPES without a line here fails the type-check.
import { azure } from './azure.ts';
import { gcs } from './gcs.ts';
import { local } from './local.ts';
import { s3 } from './s3.ts';
import type { StorageDriver } from './types.ts';

export const STORAGE_TYPES = ['local', 's3', 'gcs', 'azure'] as const;
export type StorageType = (typeof STORAGE_TYPES)[number];

export const STORAGE_DRIVERS: Readonly<Record<StorageType, StorageDriver>> = { local, s3, gcs, azure };
