import test from 'ava';
import { formatIp, formatPrefix, parseIp, parsePrefix } from '../../src/config/ip-prefix';

test('addresses parse to 16 bytes, IPv4 as IPv4-mapped', (t) => {
  t.is(parseIp('10.1.2.3').toString('hex'), '00000000000000000000ffff0a010203');
  t.is(parseIp('::1').toString('hex'), '00000000000000000000000000000001');
  t.is(parseIp('::ffff:1.2.3.4').toString('hex'), '00000000000000000000ffff01020304');
  t.is(parseIp('2001:db8::8:800:200c:417a').toString('hex'), '20010db80000000000080800200c417a');
  t.throws(() => parseIp('300.1.1.1'), { message: /not an IP address/ });
});

test('formatting is RFC 5952 and mapped addresses print as IPv4', (t) => {
  for (const a of ['::1', '::', '1::', 'fd00:5a::1', 'fe80::1:2:3:4', '1:2:3:4:5:6:7:8', '10.0.0.1']) {
    t.is(formatIp(parseIp(a)), a);
  }
  t.is(formatIp(parseIp('::ffff:127.0.0.1')), '127.0.0.1');
});

test('prefixes are masked and IPv4 lengths shift by 96', (t) => {
  const p = parsePrefix('10.244.7.9/16');
  t.is(p.prefixlen, 112);
  t.is(formatPrefix(p), '10.244.0.0/16');
  t.is(formatPrefix(parsePrefix('fd00::1/64')), 'fd00::/64');
  t.is(parsePrefix('192.0.2.2').prefixlen, 128);
  t.throws(() => parsePrefix('10.0.0.0/33'), { message: /out of range/ });
});
