// DB_TYPE=mongodb: mongorestore reads the `mongodump --archive` stream on stdin. Counts are
// documents per collection, read with mongosh when the image has it.
import { join } from 'node:path';
import { mongoConnection } from '../engines/mongodb.ts';
import { DumpError } from '../errors.ts';
import type { Restorer } from './types.ts';

export const mongodb = {
  formats: ['archive'],
  countUnsupported: 'the image has no mongod or mongosh',
  tools: () => ['mongorestore'],

  command(db, { secretsDir, tool, force }) {
    const { args, files } = mongoConnection(db, join(secretsDir, 'mongorestore.yaml'));
    const only = db.name && !db.allDatabases ? [`--nsInclude=${db.name}.*`] : [];
    // --drop: replace collections the archive holds instead of failing on duplicate keys.
    return { file: tool, args: [...args, ...only, ...(force ? ['--drop'] : []), ...db.extraArgs, '--archive'], env: {}, files };
  },

  count() {
    return Promise.reject(new DumpError('counting mongodb collections needs mongosh, which this image does not ship', { kind: 'missing-tool', stage: 'restore' }));
  },
} satisfies Restorer;
