import { createServer } from 'node:net';

// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it, we release it for the caller.
// Another process can still take it before the caller binds, so servers.ts retries on "address in use".
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  if (address === null || typeof address === 'string') throw new Error('listening on 127.0.0.1:0 gave no TCP port');
  return address.port;
}
