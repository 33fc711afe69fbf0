// Unit tests of the client shared across the tabs of one browser. Run: node --test test/unit/
import test from 'node:test';
import assert from 'node:assert/strict';

import { settle, uuid, json, of, browser } from './fakes.mjs';

test('shared: one stream per browser; followers get every event, open and close', async () => {
  const b = browser();
  const a = b.tab();
  await settle();
  const c = b.tab();
  await settle();
  assert.equal(a.handle.isLeader, true);
  assert.equal(c.handle.isLeader, false);
  assert.equal(b.net.calls.length, 1);
  assert.equal(b.ES.instances.length, 1);

  const es = b.ES.instances[0];
  es.ready();
  es.emit('order.updated', { n: 1 }, uuid(1));
  es.emit('message', { n: 2 }, uuid(2));
  await settle();
  assert.deepEqual(a.ids(), [uuid(1), uuid(2)]);
  assert.deepEqual(c.ids(), [uuid(1), uuid(2)]);
  assert.deepEqual(of(c.log, 'event')[0].data, { n: 1 });
  assert.deepEqual(of(c.log, 'open'), [{ sub: 'alice', topics: ['orders/*'] }]);
  assert.equal(c.handle.state, 'open');
  assert.equal(c.handle.lastEventId, uuid(2));

  es.emit('close', { reason: 'shutdown' });
  await settle();
  assert.deepEqual(of(c.log, 'close'), [{ reason: 'shutdown' }]);
  assert.equal(c.handle.state, 'reconnecting');
  a.handle.close();
  c.handle.close();
});

test('shared: a late tab learns the open state from the leader', async () => {
  const b = browser();
  const a = b.tab();
  await settle();
  b.ES.instances[0].ready();
  b.ES.instances[0].emit('order.updated', {}, uuid(5));
  const late = b.tab();
  await settle();
  assert.equal(late.handle.state, 'open');
  assert.equal(of(late.log, 'open').length, 1);
  assert.equal(late.handle.lastEventId, uuid(5));
  a.handle.close();
  late.handle.close();
});

test('shared: when the leader closes, a follower takes over, resumes, and drops replayed duplicates', async () => {
  const b = browser();
  const a = b.tab();
  await settle();
  const c = b.tab();
  await settle();
  const first = b.ES.instances[0];
  first.ready();
  first.emit('order.updated', { n: 1 }, uuid(1));
  first.emit('order.updated', { n: 2 }, uuid(2));
  await settle();

  a.handle.close();
  assert.equal(first.closed, true);
  await settle();
  assert.equal(a.handle.state, 'closed');
  assert.equal(c.handle.isLeader, true);
  assert.equal(b.net.calls.length, 2);
  const second = b.ES.instances[1];
  assert.equal(second.url, `/stream?token=ticket-2&lastEventId=${uuid(2)}`);
  assert.equal(c.handle.state, 'reconnecting');

  second.ready();
  second.emit('order.updated', { n: 2 }, uuid(2)); // replayed, already delivered
  second.emit('order.updated', { n: 3 }, uuid(3));
  await settle();
  assert.deepEqual(c.ids(), [uuid(1), uuid(2), uuid(3)]);
  assert.equal(c.handle.state, 'open');
  assert.equal(of(c.log, 'open').length, 2);
  c.handle.close();
  assert.equal(second.closed, true);
  await settle();
  assert.equal(b.locks.held.size, 0, 'the lock is released');
});

test('shared: a 401 stops every tab, and no tab requests again', async () => {
  const b = browser([json(401, { error: 'token_revoked', message: 'revoked' })]);
  const a = b.tab();
  const c = b.tab();
  await settle();
  await b.timers.runAll();
  await settle();
  assert.equal(a.handle.state, 'stopped');
  assert.equal(c.handle.state, 'stopped');
  assert.deepEqual(of(c.log, 'error'), [{ status: 401, error: 'token_revoked', message: 'revoked', fatal: true }]);
  const late = b.tab();
  await settle();
  assert.equal(late.handle.state, 'stopped');
  assert.equal(b.net.calls.length, 1);
  a.handle.close();
  c.handle.close();
  late.handle.close();
});

test('shared: without Web Locks or BroadcastChannel each tab runs its own stream', async () => {
  const b = browser();
  const a = b.tab({ locks: null, BroadcastChannel: null });
  const c = b.tab({ locks: null, BroadcastChannel: null });
  await settle();
  assert.equal(b.ES.instances.length, 2);
  assert.equal(a.handle.isLeader, true);
  assert.equal(c.handle.isLeader, true);
  a.handle.close();
  c.handle.close();
});
