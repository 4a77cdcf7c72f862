// The one error type the client rejects with, so callers can branch on `code` whether the broker
// refused a request (a contract Error in a Response) or the session itself failed (gRPC status).
import { status as GrpcStatus, type StatusObject } from '@grpc/grpc-js';
import { Error_Code, type Error as ContractError } from '../proto/gen/ffi_broker_pb.js';

export { Error_Code };

/** Name of a contract error code, e.g. 'PERMISSION_DENIED'; unknown numbers (a newer broker) as 'CODE_<n>'. */
export function errorCodeName(code: number): string {
  const name = (Error_Code as unknown as Record<number, string | undefined>)[code];
  return name ?? `CODE_${code}`;
}

function grpcStatusName(code: number): string {
  const name = (GrpcStatus as unknown as Record<number, string | undefined>)[code];
  return name ?? `STATUS_${code}`;
}

export class BrokerError extends Error {
  /** The contract's Error.Code number (see Error_Code). */
  readonly code: Error_Code;
  /** Its name, e.g. 'PERMISSION_DENIED'. */
  readonly codeName: string;
  /** The text the broker (or the client) gave, without the code prefix that `message` carries. */
  readonly detail: string;
  /** Set when the error comes from the gRPC call itself rather than from a broker Response. */
  readonly grpcCode: GrpcStatus | undefined;
  readonly grpcDetails: string | undefined;

  constructor(
    code: Error_Code,
    detail: string,
    options?: { grpcCode?: GrpcStatus; grpcDetails?: string; cause?: unknown },
  ) {
    const codeName = errorCodeName(code);
    // The code name leads the message so logs and `String(err)` say what kind of failure it was.
    super(`${codeName}: ${detail}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BrokerError';
    this.code = code;
    this.codeName = codeName;
    this.detail = detail;
    this.grpcCode = options?.grpcCode;
    this.grpcDetails = options?.grpcDetails;
  }

  /** From a contract `Error` carried in a Response. */
  static fromContract(error: ContractError): BrokerError {
    return new BrokerError(error.code, error.message !== '' ? error.message : errorCodeName(error.code));
  }

  /**
   * From a gRPC status (a failed Session stream or Info call). Always code UNAVAILABLE: to the
   * caller the broker is not reachable as a session any more; the gRPC code and details stay in
   * the message and in `grpcCode`/`grpcDetails` for anyone who needs to tell them apart.
   */
  static fromGrpcStatus(status: Pick<StatusObject, 'code' | 'details'>, context = 'broker session failed'): BrokerError {
    const details = status.details ?? '';
    return new BrokerError(
      Error_Code.UNAVAILABLE,
      `${context}: gRPC ${grpcStatusName(status.code)} (${status.code})${details !== '' ? `: ${details}` : ''}`,
      { grpcCode: status.code, grpcDetails: details },
    );
  }

  /** From whatever a grpc-js callback or stream reported; non-gRPC errors keep their text. */
  static fromGrpcError(err: unknown, context?: string): BrokerError {
    if (err instanceof BrokerError) return err;
    if (typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number') {
      const e = err as { code: number; details?: unknown; message?: unknown };
      const details = typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : '';
      const out = BrokerError.fromGrpcStatus({ code: e.code, details }, context);
      return out;
    }
    const text = err instanceof Error ? err.message : String(err);
    return new BrokerError(Error_Code.UNAVAILABLE, context === undefined ? text : `${context}: ${text}`, { cause: err });
  }
}
