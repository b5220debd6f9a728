export { loadConfigFile, parseConfigText, validateConfig, substituteEnv, formatPath, toConfigIssues } from './load.js';
export { bytes, ms, parseBytes, listenAddress, parseListen, regexString, logLevel, tlsFiles } from './types.js';
