// What every storage target's `classify` shares: the shape, and the network errors that a retry may heal.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NETWORK_ERROR_CODES } from '../../../src/storage/failure.ts';
import { STORAGE_DRIVERS } from '../../../src/storage/registry.ts';

test('every target over a network classifies each socket and DNS error as unavailable', () => {
  for (const type of ['s3', 'gcs', 'azure'] as const) {
    for (const code of NETWORK_ERROR_CODES) {
      assert.equal(STORAGE_DRIVERS[type].classify(Object.assign(new Error(`connect ${code}`), { code })), 'unavailable', `${type} ${code}`);
    }
  }
});

test('every target classifies an error it knows nothing about as other', () => {
  for (const [type, driver] of Object.entries(STORAGE_DRIVERS)) assert.equal(driver.classify(new Error('something else')), 'other', type);
});

test('the local target classifies a read-only or forbidden folder as denied', () => {
  for (const code of ['EACCES', 'EPERM', 'EROFS']) assert.equal(STORAGE_DRIVERS.local.classify(Object.assign(new Error(code), { code })), 'denied', code);
});
