import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Principal } from '../../src/identity/principal.types.ts';
import { isGranted, matchesModelGlob, mayReadModel } from '../../src/policy/grants.ts';

const principal: Principal = {
  issuerName: 'prod-cluster',
  issuer: 'https://oidc.example.com',
  subject: 'system:serviceaccount:fraud:inference',
  serviceAccount: 'fraud-inference',
  grants: [
    { models: ['fraud-*'], environments: ['prod'] },
    { models: ['team/**', 'shared/embeddings'], environments: ['staging', 'prod'] },
    { models: ['research/*/v1.2'], environments: ['staging'] },
  ],
  expiresAt: 2_000_000_000,
};

describe('model globs', () => {
  describe('when the glob has a single star', () => {
    it('matches within one segment', () => {
      assert.equal(matchesModelGlob('fraud-*', 'fraud-detector'), true);
      assert.equal(matchesModelGlob('fraud-*', 'fraud-'), true);
      assert.equal(matchesModelGlob('team/*', 'team/ranker'), true);
    });

    it('does not cross a slash', () => {
      assert.equal(matchesModelGlob('fraud-*', 'fraud-detector/v2'), false);
      assert.equal(matchesModelGlob('team/*', 'team/nlp/ranker'), false);
    });
  });

  describe('when the glob has a double star', () => {
    it('matches across segments', () => {
      assert.equal(matchesModelGlob('team/**', 'team/nlp/ranker'), true);
      assert.equal(matchesModelGlob('team/**', 'team/ranker'), true);
      assert.equal(matchesModelGlob('fraud-**', 'fraud-x/y/z'), true);
    });

    it('lets **/ stand for zero or more whole segments', () => {
      assert.equal(matchesModelGlob('team/**/ranker', 'team/ranker'), true);
      assert.equal(matchesModelGlob('team/**/ranker', 'team/a/b/ranker'), true);
      assert.equal(matchesModelGlob('team/**/ranker', 'team/a/b/reranker'), false);
      assert.equal(matchesModelGlob('**/ranker', 'ranker'), true);
    });

    it('does not match outside its prefix', () => {
      assert.equal(matchesModelGlob('team/**', 'other/team/x'), false);
      assert.equal(matchesModelGlob('team/**', 'teams/x'), false);
    });
  });

  describe('when the glob has regular-expression characters', () => {
    it('treats dots literally', () => {
      assert.equal(matchesModelGlob('llama-3.1', 'llama-3.1'), true);
      assert.equal(matchesModelGlob('llama-3.1', 'llama-3x1'), false);
      assert.equal(matchesModelGlob('research/*/v1.2', 'research/a/v1x2'), false);
    });

    it('treats + ? ( ) [ ] { } | ^ $ literally', () => {
      for (const literal of ['a+b', 'a?b', 'a(b)', 'a[b]', 'a{1}', 'a|b', '^a$']) {
        assert.equal(matchesModelGlob(literal, literal), true, literal);
      }
      assert.equal(matchesModelGlob('a+b', 'aab'), false);
      assert.equal(matchesModelGlob('a?b', 'ab'), false);
      assert.equal(matchesModelGlob('a|b', 'a'), false);
    });

    it('matches the whole name, not a part', () => {
      assert.equal(matchesModelGlob('fraud', 'fraud-detector'), false);
      assert.equal(matchesModelGlob('detector', 'fraud-detector'), false);
    });
  });
});

describe('grants', () => {
  describe('when asking whether the principal may read a model at all', () => {
    it('answers true when any grant covers it, in any environment', () => {
      assert.equal(mayReadModel(principal, 'fraud-detector'), true);
      assert.equal(mayReadModel(principal, 'research/x/v1.2'), true);
    });

    it('answers false when no grant covers it', () => {
      assert.equal(mayReadModel(principal, 'payments-scorer'), false);
    });
  });

  describe('when asking about a model in an environment', () => {
    it('needs one grant that covers both', () => {
      assert.equal(isGranted(principal, 'fraud-detector', 'prod'), true);
      assert.equal(isGranted(principal, 'fraud-detector', 'staging'), false);
      assert.equal(isGranted(principal, 'shared/embeddings', 'staging'), true);
      assert.equal(isGranted(principal, 'research/x/v1.2', 'prod'), false);
    });

    it('never grants an unknown environment', () => {
      assert.equal(isGranted(principal, 'fraud-detector', 'dev'), false);
    });
  });
});
