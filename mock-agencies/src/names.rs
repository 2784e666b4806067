//! Word lists the generated population is drawn from: regions, names,
//! company words, bank brands and branches, courts, districts and roads.
//! Small on purpose: realistic-looking, not exhaustive.

/// Region codes of resident identity numbers (and of companies' credit codes).
pub const PERSON_REGIONS: &[&str] = &[
    "620503", "620503", "620503", "620502", "620502", "620521", "620522", "620523", "620524",
    "360426", "110105", "310104", "440305", "510107", "340524",
];

/// Region codes of registration authorities in credit codes.
pub const COMPANY_REGIONS: &[&str] = &[
    "620500", "620503", "620502", "620100", "110000", "110105", "310000", "440300",
];

pub const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林",
    "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "萧", "程", "曹",
];

/// Given names for an odd sequence number (men) ...
pub const MALE_GIVEN: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "建国", "志强", "海波",
    "晓东", "文博", "子轩", "浩然", "俊杰", "国华", "建军", "永刚", "立新",
];

/// ... and for an even one (women): the sequence's parity is the sex.
pub const FEMALE_GIVEN: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀英", "桂兰", "玉梅", "淑珍", "丽华", "雅婷",
    "欣怡", "梓涵", "诗涵", "晓燕", "红梅", "春花", "慧", "婷", "雪", "琳",
];

pub const COMPANY_PLACES: &[&str] = &["天水", "甘肃", "兰州", "麦积", "秦州", "北京", "上海"];
pub const COMPANY_WORDS: &[&str] = &[
    "华成", "恒达", "鑫源", "金泰", "宏远", "兴隆", "博睿", "瑞丰", "永安", "新锐", "陇原", "伏羲",
];
pub const COMPANY_TRADES: &[&str] = &[
    "商贸",
    "建筑工程",
    "农业科技",
    "食品",
    "物流",
    "房地产开发",
    "机械制造",
    "电子科技",
    "果业",
];
pub const COMPANY_FORMS: &[&str] = &["有限公司", "有限公司", "有限责任公司", "股份有限公司"];

/// Courts that may already have measures standing on an asset: name and
/// the court code used in their case numbers. The requesting court (麦积区)
/// is absent so a standing measure is always someone else's.
pub const OTHER_COURTS: &[(&str, &str)] = &[
    ("秦州区人民法院", "甘0502"),
    ("甘谷县人民法院", "甘0523"),
    ("武山县人民法院", "甘0524"),
    ("清水县人民法院", "甘0521"),
    ("秦安县人民法院", "甘0522"),
    ("天水市中级人民法院", "甘05"),
    ("兰州市城关区人民法院", "甘0102"),
    ("北京市朝阳区人民法院", "京0105"),
    ("上海市浦东新区人民法院", "沪0115"),
];

/// Districts of the registry's area: region code and name.
pub const DISTRICTS: &[(&str, &str)] = &[
    ("620503", "麦积区"),
    ("620503", "麦积区"),
    ("620502", "秦州区"),
    ("620502", "秦州区"),
    ("620521", "清水县"),
    ("620522", "秦安县"),
    ("620523", "甘谷县"),
    ("620524", "武山县"),
];

pub const ROADS: &[&str] = &[
    "桥南伯阳路",
    "马跑泉路",
    "民主西路",
    "藉河南路",
    "建设路",
    "双桥路",
    "天河南路",
    "滨河东路",
    "羲皇大道",
    "岷山路",
    "成纪大道",
    "大众路",
];

/// A bank's look: how its branches are named and its account numbers begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BankBrand {
    pub name: &'static str,
    /// Card BIN of personal accounts (19 digits with the Luhn digit).
    pub card_prefix: &'static str,
    /// Prefix of corporate settlement accounts.
    pub corporate_prefix: &'static str,
    /// Corporate account length: banks differ.
    pub corporate_len: usize,
    pub branches: &'static [&'static str],
}

pub const ICBC: BankBrand = BankBrand {
    name: "中国工商银行",
    card_prefix: "622202",
    corporate_prefix: "2705",
    corporate_len: 19,
    branches: &[
        "中国工商银行天水麦积支行",
        "中国工商银行天水秦州支行",
        "中国工商银行天水分行营业部",
        "中国工商银行天水民主路支行",
        "中国工商银行甘谷支行",
        "中国工商银行武山支行",
        "中国工商银行秦安支行",
        "中国工商银行兰州城关支行",
        "中国工商银行北京朝阳支行",
    ],
};

pub const CCB: BankBrand = BankBrand {
    name: "中国建设银行",
    card_prefix: "621700",
    corporate_prefix: "6205016",
    corporate_len: 20,
    branches: &[
        "中国建设银行天水分行营业部",
        "中国建设银行天水麦积支行",
        "中国建设银行天水秦州支行",
        "中国建设银行天水罗玉路支行",
        "中国建设银行甘谷支行",
        "中国建设银行清水支行",
        "中国建设银行兰州城关支行",
        "中国建设银行上海浦东分行",
    ],
};

pub const ABC: BankBrand = BankBrand {
    name: "中国农业银行",
    card_prefix: "622848",
    corporate_prefix: "2741",
    corporate_len: 17,
    branches: &[
        "中国农业银行天水分行营业部",
        "中国农业银行天水麦积支行",
        "中国农业银行天水秦州支行",
        "中国农业银行武山县支行",
    ],
};

pub const BOC: BankBrand = BankBrand {
    name: "中国银行",
    card_prefix: "621661",
    corporate_prefix: "1037",
    corporate_len: 12,
    branches: &[
        "中国银行天水分行营业部",
        "中国银行天水麦积支行",
        "中国银行天水秦州支行",
    ],
};

impl BankBrand {
    /// Every brand the mocks know.
    pub const ALL: [BankBrand; 4] = [ICBC, CCB, ABC, BOC];

    /// The brand an agency's display name points to, if it names one.
    pub fn named_in(display_name: &str) -> Option<BankBrand> {
        Self::ALL
            .into_iter()
            .find(|b| display_name.contains(b.name))
    }

    /// The brand an agency's display name points to; otherwise one by
    /// dialect, so bank-a (XML) looks like ICBC and bank-b (JSON) like CCB.
    pub fn for_agency(display_name: &str, xml: bool) -> BankBrand {
        Self::named_in(display_name).unwrap_or(if xml { ICBC } else { CCB })
    }
}
