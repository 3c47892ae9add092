import test from 'ava';
import { checkCidr } from '../../src/config/cidr';

test('network addresses with a prefix length pass', (t) => {
  for (const cidr of ['10.244.0.0/16', '0.0.0.0/0', '192.168.1.7/32', 'fd00::/64', 'FD00:0:0::/64', '::/0', '::1/128', '::ffff:10.0.0.0/104']) {
    t.notThrows(() => checkCidr(cidr), cidr);
  }
});

test('host bits are rejected with the network address suggested', (t) => {
  t.throws(() => checkCidr('10.0.0.1/8'), { message: '10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?' });
  t.throws(() => checkCidr('10.1.2.3/20'), { message: /did you mean 10\.1\.0\.0\/20\?$/ });
  t.throws(() => checkCidr('fd00::1/64'), { message: 'fd00::1/64 has host bits set; did you mean fd00::/64?' });
  t.throws(() => checkCidr('fd12:3456:789a:1::1/48'), { message: /did you mean fd12:3456:789a::\/48\?$/ });
});

test('malformed CIDRs', (t) => {
  t.throws(() => checkCidr('10.0.0.1'), { message: /no prefix length .*10\.0\.0\.1\/32/ });
  t.throws(() => checkCidr('fd00::1'), { message: /fd00::1\/128/ });
  t.throws(() => checkCidr('10.0.0.0/33'), { message: /0\.\.32/ });
  t.throws(() => checkCidr('fd00::/129'), { message: /0\.\.128/ });
  t.throws(() => checkCidr('10.0.0.0/'), { message: /prefix length/ });
  t.throws(() => checkCidr('10.0.0.0/-1'), { message: /prefix length/ });
  t.throws(() => checkCidr('10.0.0.0/8/8'), { message: /prefix length/ });
  t.throws(() => checkCidr('10.0.0.256/8'), { message: /not an IPv4 or IPv6 address/ });
  t.throws(() => checkCidr('example.com/8'), { message: /not an IPv4 or IPv6 address/ });
  t.throws(() => checkCidr('fe80::%eth0/64'), { message: /zone/ });
});
