// iperf3 in UDP mode: datagrams per second through a datapath. iperf3 connect()s its UDP socket,
// so socklb translates it once, as it does a TCP connection, while netfilter looks up conntrack
// for every datagram.

export interface IperfOptions {
  host: string;
  port: number;
  seconds: number;
  /** Payload bytes per datagram: small, so that per-packet costs dominate. */
  datagramBytes: number;
}

export interface IperfReport {
  sentDatagrams: number;
  /** What the server received: sent less what it counted lost. */
  receivedDatagrams: number;
  durationS: number;
  receivedPerSecond: number;
}

export function iperfArgv(options: IperfOptions): string[] {
  return [
    'iperf3',
    '--client',
    options.host,
    '--port',
    String(options.port),
    '--udp',
    '--bitrate',
    '0',
    '--length',
    String(options.datagramBytes),
    '--time',
    String(options.seconds),
    '--connect-timeout',
    '3000',
    '--json',
  ];
}

export function parseIperfReport(stdout: string): IperfReport {
  const report = JSON.parse(stdout) as { error?: string; end?: { sum?: { packets?: number; lost_packets?: number; seconds?: number } } };
  if (report.error !== undefined) throw new Error(`iperf3: ${report.error}`);
  const sum = report.end?.sum;
  if (sum?.packets === undefined || sum.lost_packets === undefined || sum.seconds === undefined)
    throw new Error(`iperf3 printed no UDP summary: ${stdout.slice(0, 500)}`);
  const receivedDatagrams = sum.packets - sum.lost_packets;
  return { sentDatagrams: sum.packets, receivedDatagrams, durationS: sum.seconds, receivedPerSecond: receivedDatagrams / sum.seconds };
}
