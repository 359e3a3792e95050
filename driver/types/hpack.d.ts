// The part of hpack.js (no published types) that the authority normaliser uses.
declare module 'hpack.js' {
  interface Header {
    name: string;
    value: string;
  }
  interface Decompressor {
    write(chunk: Buffer): void;
    execute(): void;
    read(): Header | null;
    on(event: 'error', cb: (err: Error) => void): void;
  }
  const hpack: {
    decompressor: { create(opts: { table: { size: number } }): Decompressor };
  };
  export default hpack;
}
