// CPU per certificate of the ACME client alone (issue 19, item 3): what Node costs for one
// order with no gateway around it: a P-256 key and CSR, the order's requests to a real Pebble
// and the three http-01 validation requests answered from a Map in this process. No storage, no
// lock, no logs, no TLS handshake or proxied request. A warm-up of `warm` names ten at a time
// (the code hot), then `paced` names one every 1.1 s, each measured from its start to 400 ms
// after it ends (this process's threads, to the ns), minus the process's idle CPU rate.
//
//   node --import tsx bench/bare-acme-cpu.ts [warm=40] [paced=20]
import { obtainCertificate } from '../src/acme/obtain.ts';
import { AcmeAccount } from '../src/acme/plumbing/account.ts';
import { generateAccountKey } from '../src/acme/x509.ts';
import { newCertRequest, Responders } from '../test/support/acme-responders.ts';
import { startPebble } from '../test/support/pebble.ts';
import { cpuPreciseMsOf, median, sleep } from './util.ts';

const warm = Number(process.argv[2] ?? 40);
const paced = Number(process.argv[3] ?? 20);
const responders = new Responders();
await responders.start();
const pebble = await startPebble({ httpPort: responders.httpPort, tlsPort: responders.tlsPort });
const account = AcmeAccount.connect({ directoryUrl: pebble.directoryUrl, accountKey: generateAccountKey(), trustedRoots: [pebble.listenerCaPem] });
const cpu = (): number => cpuPreciseMsOf(process.pid, { descendants: false });
const obtain = async (name: string): Promise<void> => {
  await obtainCertificate(account, { domains: [name], csrDer: await newCertRequest([name]), solvers: [responders.http01()] });
};
try {
  for (let i = 0; i < warm; i += 10) await Promise.all(Array.from({ length: Math.min(10, warm - i) }, (_, j) => obtain(`w${i + j}.bare.test`)));
  await sleep(1000);
  const [i0, t0] = [cpu(), performance.now()];
  await sleep(3000);
  const idlePerMs = (cpu() - i0) / (performance.now() - t0);
  const each: number[] = [];
  for (let i = 0; i < paced; i++) {
    const [c0, s0] = [cpu(), performance.now()];
    await obtain(`p${i}.bare.test`);
    await sleep(400);
    each.push(cpu() - c0 - idlePerMs * (performance.now() - s0));
    await sleep(Math.max(0, 1100 - (performance.now() - s0)));
  }
  console.log(`idle ${(idlePerMs * 1000).toFixed(2)} ms/s; CPU per certificate, paced: median ${median(each).toFixed(1)} ms, mean ${(each.reduce((a, b) => a + b, 0) / each.length).toFixed(1)} ms`);
  console.log(each.map((x) => x.toFixed(1)).join(' '));
} finally {
  await account.transport.close();
  await pebble.stop();
  await responders.stop();
}
