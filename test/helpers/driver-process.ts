// The driver-process fixture lives with the benchmarks, which use it too.
export { DriverProcess, MAIN, undoUnder, type DriverOptions } from '../../bench/driver-process.js';
