// Winston JSON-lines logger. Every logged request passes through redact().
import winston from 'winston';

export type Logger = winston.Logger;

export function createLogger(level = 'info', stream?: NodeJS.WritableStream): Logger {
  const transport = stream
    ? new winston.transports.Stream({ stream })
    : new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] });
  return winston.createLogger({
    level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [transport],
  });
}

export { redact } from '../volume/redact.js';
