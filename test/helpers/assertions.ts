// Assertions and builders shared by the suites that talk to a real broker.
import assert from 'node:assert/strict';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { BrokerError } from '../../client/broker_error.js';
import { Error_Code } from '../../proto/gen/ffi_broker_pb.js';

export const ffi = (message: FfiRequest['message']) => new FfiRequest({ message });

/** Awaits `promise` and checks it was refused with `code` and a message matching `pattern`. */
export async function expectRefusal(promise: Promise<unknown>, code: Error_Code, pattern: RegExp): Promise<BrokerError> {
  let err: unknown;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof BrokerError, `expected a BrokerError ${Error_Code[code]}, got ${err === undefined ? 'success' : String(err)}`);
  assert.equal(err.codeName, Error_Code[code], err.message);
  assert.equal(err.grpcCode, undefined, 'a contract Error in a Response, not a failed stream');
  assert.match(err.detail, pattern);
  return err;
}

/** A request refused because its values would abort the library: INVALID_REQUEST, saying so. */
export async function expectAbortRefusal(promise: Promise<unknown>, why: RegExp): Promise<void> {
  const err = await expectRefusal(promise, Error_Code.INVALID_REQUEST, why);
  assert.match(err.message, /would abort/);
}
