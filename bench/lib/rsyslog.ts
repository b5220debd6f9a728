// rsyslog as a benchmark peer: a private rsyslogd reading files with imfile (inotify, a
// wildcard, from their start) into one Kafka topic with omkafka, each record the line as read.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { which } from '../../test/harness/process.js';

const RSYSLOG_MODULES = '/usr/lib/x86_64-linux-gnu/rsyslog';

/** rsyslogd's path, or why it cannot run (not installed, no omkafka). */
export function findRsyslogd(): { path: string } | { missing: string } {
  const path = which('rsyslogd') ?? (existsSync('/usr/sbin/rsyslogd') ? '/usr/sbin/rsyslogd' : undefined);
  if (!path) return { missing: 'rsyslogd is not installed (apt-get install -y rsyslog rsyslog-kafka)' };
  if (!existsSync(join(RSYSLOG_MODULES, 'omkafka.so'))) return { missing: `omkafka is not installed (no ${RSYSLOG_MODULES}/omkafka.so; apt-get install -y rsyslog-kafka)` };
  return { path };
}

/** Writes `<dir>/rsyslog.conf` (work directory `<dir>/work`) reading `<logs>/*.log` into `topic`; returns the config's path. */
export function writeRsyslogConf(dir: string, opts: { bootstrap: string; topic: string; logs: string; tag: string }): string {
  const workDir = join(dir, 'work');
  mkdirSync(workDir, { recursive: true });
  const conf = join(dir, 'rsyslog.conf');
  writeFileSync(
    conf,
    [
      `global(workDirectory="${workDir}" maxMessageSize="64k")`,
      'module(load="imfile" mode="inotify")',
      'module(load="omkafka")',
      // The line exactly as read: rawmsg, no added newline.
      'template(name="line" type="string" string="%rawmsg%")',
      `ruleset(name="${opts.tag}") {`,
      `  action(type="omkafka" broker=["${opts.bootstrap}"] topic="${opts.topic}" template="line")`,
      '}',
      `input(type="imfile" File="${opts.logs}/*.log" Tag="${opts.tag}" ruleset="${opts.tag}")`,
      '',
    ].join('\n'),
  );
  return conf;
}
