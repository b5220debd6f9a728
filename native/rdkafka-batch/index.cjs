// Loads the addon after @confluentinc/kafka-javascript, whose librdkafka it uses (see binding.gyp).
'use strict';
require('@confluentinc/kafka-javascript');
module.exports = require('./build/Release/ferry_rdkafka_batch.node');
