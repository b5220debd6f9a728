export { loadConfigFile, parseConfigText, validateConfig, substituteEnv, formatPath, toConfigIssues } from './load.js';
export { MAX_AGE_MS, MAX_TIMER_MS, bytes, ms, parseBytes, listenAddress, parseListen, regexString, logLevel, tlsFiles } from './types.js';
