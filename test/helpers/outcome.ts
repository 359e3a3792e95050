// What a call answered, as the name of its gRPC code ('OK' when it
// succeeded): for tables of requests and the codes they must get, whether
// the call went over gRPC (a ServiceError) or straight to a handler (a
// CsiError); both carry the spec's numeric code.
import { status } from '@grpc/grpc-js';

export async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'OK';
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'number') throw err;
    return status[code] as string;
  }
}
