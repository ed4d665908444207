// The attachment keeper's decisions over made-up attachments: what it repairs and how, what it
// reports, and what it leaves alone. The kernel's side is in test/integration/attachment-repair.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import {
  AttachmentKeeper,
  planRepair,
  type Attachment,
  type AttachmentRepair,
  type KeptAttachments,
} from '../../src/agent/attachment-keeper.js';
import type { LinkFault, LinkProblem } from '../../src/pins/link-health.js';

const WEB: Attachment = { kind: 'cgroup', cgroup: '/cg/web' };
const S1: Attachment = { kind: 'sandbox', cgroup: '/cg/s1', sandbox: 's1' };
const S2: Attachment = { kind: 'sandbox', cgroup: '/cg/s2', sandbox: 's2' };

type Problem = LinkProblem & { program: string };

const problem = (program: string, reason: LinkFault, detail = `${reason} detail`): Problem => ({ program, reason, detail });
const key = (attachment: Attachment) => (attachment.kind === 'sandbox' ? attachment.sandbox : attachment.cgroup);

/** Attachments whose links' problems the test sets; a repair clears them unless told to fail. */
class FakeAttachments implements KeptAttachments {
  readonly calls: string[] = [];
  readonly attachments: Attachment[];
  readonly broken = new Map<string, Problem[]>();
  readonly failures = new Map<string, Error>();

  constructor(...attachments: Attachment[]) {
    this.attachments = attachments;
  }

  list(): Attachment[] {
    return [...this.attachments];
  }

  problems(attachment: Attachment): Problem[] {
    const failure = this.failures.get(`problems ${key(attachment)}`);
    if (failure) throw failure;
    return this.broken.get(key(attachment)) ?? [];
  }

  reattach(attachment: Attachment): void {
    this.calls.push(`reattach ${key(attachment)}`);
    const failure = this.failures.get(`reattach ${key(attachment)}`);
    if (failure) throw failure;
    this.broken.delete(key(attachment));
  }

  forget(attachment: Attachment): void {
    this.calls.push(`forget ${key(attachment)}`);
    this.attachments.splice(this.attachments.indexOf(attachment), 1);
  }
}

function keeperOf(attachments: FakeAttachments) {
  const logs: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as { level: number; msg: string }) });
  let now = Date.parse('2026-01-01T00:00:00Z');
  const keeper = new AttachmentKeeper(attachments, logger, () => (now += 1000));
  const reported: AttachmentRepair[] = [];
  keeper.onRepair((repair) => reported.push(repair));
  return { keeper, logs, reported };
}

const outcomes = (repairs: readonly AttachmentRepair[]) => repairs.map(({ reason, outcome }) => `${reason} ${outcome}`);

describe('planRepair', () => {
  it('does nothing for an attachment whose links all serve', () => {
    assert.equal(planRepair(S1, []), undefined);
  });

  it('attaches again for the worst problem, naming its link and counting the others', () => {
    const plan = planRepair(S1, [
      problem('socklb_connect4', 'not_effective'),
      problem('socklb_connect6', 'cgroup_replaced', 'link 12 is attached to cgroup 6999, ...'),
      problem('socklb_sendmsg4', 'link_detached'),
    ]);
    assert.deepEqual(plan, {
      action: 'reattach',
      reason: 'cgroup_replaced',
      detail: 'socklb_connect6: link 12 is attached to cgroup 6999, ... (and 2 other links)',
    });
    assert.equal(
      planRepair(WEB, [problem('socklb_connect4', 'link_missing', 'open pin x: ENOENT')])?.detail,
      'socklb_connect4: open pin x: ENOENT',
    );
  });

  it('forgets a sandbox whose cgroup is gone, as an agent that starts does, and waits for a --cgroup', () => {
    const gone = [problem('socklb_connect4', 'cgroup_gone', 'no cgroup directory at /cg/s1'), problem('socklb_connect6', 'cgroup_gone')];
    assert.deepEqual(planRepair(S1, gone), { action: 'forget', reason: 'cgroup_gone', detail: 'no cgroup directory at /cg/s1' });
    assert.equal(planRepair(WEB, gone)?.action, 'wait');
  });
});

describe('the attachment keeper', () => {
  it('leaves attachments whose links serve alone, and reports nothing', () => {
    const attachments = new FakeAttachments(WEB, S1);
    const { keeper, logs, reported } = keeperOf(attachments);
    assert.deepEqual(keeper.check(), []);
    assert.deepEqual(attachments.calls, []);
    assert.deepEqual([logs, reported, keeper.recentRepairs()], [[], [], []]);
  });

  it('attaches a sandbox again, and reports it once: a warning, a listener call, the latest repairs', () => {
    const attachments = new FakeAttachments(WEB, S1, S2);
    attachments.broken.set('s1', [problem('socklb_connect4', 'link_detached', 'link 12 is attached to no cgroup')]);
    const { keeper, logs, reported } = keeperOf(attachments);
    const repair: AttachmentRepair = {
      ...S1,
      at: '2026-01-01T00:00:01.000Z',
      reason: 'link_detached',
      detail: 'socklb_connect4: link 12 is attached to no cgroup',
      outcome: 'reattached',
    };
    assert.deepEqual(keeper.check(), [repair]);
    assert.deepEqual(attachments.calls, ['reattach s1'], 'the others are not touched');
    assert.deepEqual(
      logs.map(({ level, msg }) => [level, msg]),
      [[40, 're-attached sandbox s1 (cgroup /cg/s1): link_detached: socklb_connect4: link 12 is attached to no cgroup']],
    );
    assert.deepEqual(reported, [repair]);
    assert.deepEqual(keeper.check(), [], 'repaired');
    assert.deepEqual(keeper.recentRepairs(), [repair]);
  });

  it('forgets a sandbox whose cgroup is gone, and says so as an agent that starts does', () => {
    const attachments = new FakeAttachments(S1);
    attachments.broken.set('s1', [problem('socklb_connect4', 'cgroup_gone', 'no cgroup directory at /cg/s1')]);
    const { keeper, logs } = keeperOf(attachments);
    assert.deepEqual(outcomes(keeper.check()), ['cgroup_gone removed']);
    assert.deepEqual(attachments.calls, ['forget s1']);
    assert.deepEqual(
      logs.map(({ msg }) => msg),
      ['removed sandbox s1 (cgroup /cg/s1): its cgroup is gone'],
    );
  });

  it('waits for a --cgroup that is gone, reports it once and counts it failing, then attaches it when it is back', () => {
    const attachments = new FakeAttachments(WEB);
    attachments.broken.set('/cg/web', [problem('socklb_connect4', 'cgroup_gone', 'no cgroup directory at /cg/web')]);
    const { keeper, logs } = keeperOf(attachments);
    assert.deepEqual(outcomes(keeper.check()), ['cgroup_gone failed']);
    assert.deepEqual(keeper.check(), [], 'reported once');
    assert.deepEqual(attachments.calls, [], 'nothing to attach to');
    assert.deepEqual(keeper.failingAttachments(), [WEB]);
    assert.deepEqual(
      logs.map(({ level, msg }) => [level, msg]),
      [[50, 'cannot repair cgroup /cg/web: cgroup_gone: no cgroup directory at /cg/web: nothing to attach to until the directory is back']],
    );

    attachments.broken.set('/cg/web', [problem('socklb_connect4', 'link_detached')]);
    assert.deepEqual(outcomes(keeper.check()), ['link_detached reattached']);
    assert.deepEqual(keeper.failingAttachments(), []);
  });

  it('keeps a sandbox whose re-attach fails, reports the failure once per reason, and tries again at every check', () => {
    const attachments = new FakeAttachments(S1);
    attachments.broken.set('s1', [problem('socklb_connect4', 'cgroup_replaced')]);
    attachments.failures.set('reattach s1', new Error('attach socklb_connect4 to cgroup /cg/s1: EPERM'));
    const { keeper, logs } = keeperOf(attachments);
    const [failed] = keeper.check();
    assert.deepEqual([failed?.outcome, failed?.error], ['failed', 'attach socklb_connect4 to cgroup /cg/s1: EPERM']);
    assert.deepEqual(keeper.check(), []);
    assert.deepEqual(attachments.calls, ['reattach s1', 'reattach s1'], 'tried at every check');
    assert.deepEqual(keeper.failingAttachments(), [S1]);
    attachments.failures.set('reattach s1', new Error('attach socklb_connect4 to cgroup /cg/s1: E2BIG'));
    assert.deepEqual(outcomes(keeper.check()), ['cgroup_replaced failed'], 'a new reason is reported');
    assert.equal(logs.length, 2);

    attachments.failures.delete('reattach s1');
    assert.deepEqual(outcomes(keeper.check()), ['cgroup_replaced reattached']);
    assert.deepEqual(keeper.failingAttachments(), []);
  });

  it('forgets a failing attachment that is no longer served', () => {
    const attachments = new FakeAttachments(S1);
    attachments.broken.set('s1', [problem('socklb_connect4', 'link_detached')]);
    attachments.failures.set('reattach s1', new Error('EPERM'));
    const { keeper } = keeperOf(attachments);
    keeper.check();
    attachments.attachments.length = 0;
    keeper.check();
    assert.deepEqual(keeper.failingAttachments(), []);
  });

  it('logs an attachment it cannot check, and checks the others', () => {
    const attachments = new FakeAttachments(S1, S2);
    attachments.failures.set('problems s1', new Error('open /cg/s1: EACCES'));
    attachments.broken.set('s2', [problem('socklb_connect4', 'link_detached')]);
    const { keeper, logs } = keeperOf(attachments);
    assert.deepEqual(outcomes(keeper.check()), ['link_detached reattached']);
    assert.deepEqual(logs[0]?.msg, 'check sandbox s1 (cgroup /cg/s1): open /cg/s1: EACCES');
  });

  it('keeps the latest 16 repairs, the latest first', () => {
    const attachments = new FakeAttachments(S1);
    const { keeper } = keeperOf(attachments);
    for (let round = 0; round < 20; round++) {
      attachments.broken.set('s1', [problem('socklb_connect4', 'link_detached', `round ${round}`)]);
      keeper.check();
    }
    const recent = keeper.recentRepairs();
    assert.equal(recent.length, 16);
    assert.deepEqual([recent[0]?.detail, recent[15]?.detail], ['socklb_connect4: round 19', 'socklb_connect4: round 4']);
  });

  it('checks every interval once started, and no more once stopped', async () => {
    const attachments = new FakeAttachments(S1);
    const { keeper } = keeperOf(attachments);
    attachments.broken.set('s1', [problem('socklb_connect4', 'link_detached')]);
    keeper.start(10);
    await new Promise((resolve) => setTimeout(resolve, 50));
    keeper.stop();
    assert.deepEqual(attachments.calls, ['reattach s1']);
    attachments.broken.set('s1', [problem('socklb_connect4', 'link_detached')]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(attachments.calls, ['reattach s1']);
  });
});
