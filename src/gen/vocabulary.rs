//! The words and codes of the generated data: names, genders and tiers, cities, channels,
//! occupations, e-mail domains, the product catalogue's categories and brands, event types and tags,
//! each with its relative frequency where it has one.

/// Gender codes and their shares.
pub(super) const GENDERS: [(&str, f64); 3] = [("F", 0.49), ("M", 0.49), ("U", 0.02)];

/// Membership tiers and their shares.
pub(super) const TIERS: [(&str, f64); 4] = [("bronze", 0.60), ("silver", 0.25), ("gold", 0.11), ("platinum", 0.04)];

/// Common Chinese surnames with approximate relative frequencies (percent of the population).
pub(super) const SURNAMES: &[(&str, f64)] = &[
    ("王", 7.25),
    ("李", 7.19),
    ("张", 6.83),
    ("刘", 5.38),
    ("陈", 4.53),
    ("杨", 3.08),
    ("黄", 2.23),
    ("赵", 2.20),
    ("吴", 2.05),
    ("周", 1.96),
    ("徐", 1.54),
    ("孙", 1.38),
    ("马", 1.25),
    ("朱", 1.23),
    ("胡", 1.17),
    ("郭", 1.05),
    ("何", 1.01),
    ("林", 0.96),
    ("罗", 0.94),
    ("高", 0.92),
    ("郑", 0.80),
    ("梁", 0.75),
    ("谢", 0.70),
    ("宋", 0.65),
    ("唐", 0.62),
    ("许", 0.60),
    ("韩", 0.58),
    ("冯", 0.56),
    ("邓", 0.55),
    ("曹", 0.53),
    ("彭", 0.50),
    ("曾", 0.48),
    ("肖", 0.46),
    ("田", 0.44),
    ("董", 0.42),
    ("袁", 0.40),
    ("潘", 0.38),
    ("于", 0.37),
    ("蒋", 0.36),
    ("蔡", 0.35),
    ("余", 0.34),
    ("杜", 0.33),
    ("叶", 0.32),
    ("程", 0.31),
    ("苏", 0.30),
    ("魏", 0.29),
    ("吕", 0.28),
    ("丁", 0.27),
    ("任", 0.26),
    ("沈", 0.25),
    ("姚", 0.24),
    ("卢", 0.23),
    ("姜", 0.22),
    ("崔", 0.21),
    ("钟", 0.20),
    ("谭", 0.19),
    ("陆", 0.18),
    ("汪", 0.17),
    ("范", 0.16),
    ("金", 0.15),
    ("石", 0.14),
    ("廖", 0.13),
    ("贾", 0.12),
    ("夏", 0.11),
    ("韦", 0.10),
    ("欧阳", 0.05),
    ("上官", 0.01),
    ("司马", 0.01),
];

/// Given-name characters used mostly for women.
pub(super) const GIVEN_F: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "玲", "婷", "雪", "慧", "琳", "颖", "洁", "倩", "晶", "燕",
    "红", "佳", "欣", "怡", "萱", "涵", "梓", "雨", "思", "梦", "瑶", "悦", "诗", "琪", "晨", "蕾", "薇", "月", "彤",
    "璐", "婉",
];

/// Given-name characters used mostly for men.
pub(super) const GIVEN_M: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞", "鑫", "波", "斌", "宇",
    "浩", "凯", "俊", "帅", "博", "然", "轩", "睿", "泽", "子", "文", "建", "国", "志", "海", "东", "峰", "亮", "龙",
    "成", "阳",
];

/// Given-name characters used for everyone.
pub(super) const GIVEN_N: &[&str] =
    &["一", "安", "乐", "林", "晓", "天", "新", "春", "玉", "嘉", "家", "小", "永", "可", "云"];

/// The 31 mainland provincial-level divisions (the provinces of [`CITIES`]).
#[cfg(test)]
pub(super) const PROVINCES: [&str; 31] = [
    "Beijing",
    "Tianjin",
    "Hebei",
    "Shanxi",
    "Inner Mongolia",
    "Liaoning",
    "Jilin",
    "Heilongjiang",
    "Shanghai",
    "Jiangsu",
    "Zhejiang",
    "Anhui",
    "Fujian",
    "Jiangxi",
    "Shandong",
    "Henan",
    "Hubei",
    "Hunan",
    "Guangdong",
    "Guangxi",
    "Hainan",
    "Chongqing",
    "Sichuan",
    "Guizhou",
    "Yunnan",
    "Tibet",
    "Shaanxi",
    "Gansu",
    "Qinghai",
    "Ningxia",
    "Xinjiang",
];

/// Cities (pinyin, unique) and their province, grouped by province.
pub(super) const CITIES: &[(&str, &str)] = &[
    ("Beijing", "Beijing"),
    ("Tianjin", "Tianjin"),
    ("Shanghai", "Shanghai"),
    ("Chongqing", "Chongqing"),
    ("Shijiazhuang", "Hebei"),
    ("Tangshan", "Hebei"),
    ("Qinhuangdao", "Hebei"),
    ("Handan", "Hebei"),
    ("Xingtai", "Hebei"),
    ("Baoding", "Hebei"),
    ("Zhangjiakou", "Hebei"),
    ("Chengde", "Hebei"),
    ("Cangzhou", "Hebei"),
    ("Langfang", "Hebei"),
    ("Hengshui", "Hebei"),
    ("Taiyuan", "Shanxi"),
    ("Datong", "Shanxi"),
    ("Yangquan", "Shanxi"),
    ("Changzhi", "Shanxi"),
    ("Jincheng", "Shanxi"),
    ("Shuozhou", "Shanxi"),
    ("Jinzhong", "Shanxi"),
    ("Yuncheng", "Shanxi"),
    ("Xinzhou", "Shanxi"),
    ("Linfen", "Shanxi"),
    ("Lvliang", "Shanxi"),
    ("Hohhot", "Inner Mongolia"),
    ("Baotou", "Inner Mongolia"),
    ("Wuhai", "Inner Mongolia"),
    ("Chifeng", "Inner Mongolia"),
    ("Tongliao", "Inner Mongolia"),
    ("Ordos", "Inner Mongolia"),
    ("Hulunbuir", "Inner Mongolia"),
    ("Bayannur", "Inner Mongolia"),
    ("Ulanqab", "Inner Mongolia"),
    ("Shenyang", "Liaoning"),
    ("Dalian", "Liaoning"),
    ("Anshan", "Liaoning"),
    ("Fushun", "Liaoning"),
    ("Benxi", "Liaoning"),
    ("Dandong", "Liaoning"),
    ("Jinzhou", "Liaoning"),
    ("Yingkou", "Liaoning"),
    ("Fuxin", "Liaoning"),
    ("Liaoyang", "Liaoning"),
    ("Panjin", "Liaoning"),
    ("Tieling", "Liaoning"),
    ("Chaoyang", "Liaoning"),
    ("Huludao", "Liaoning"),
    ("Changchun", "Jilin"),
    ("Jilin", "Jilin"),
    ("Siping", "Jilin"),
    ("Liaoyuan", "Jilin"),
    ("Tonghua", "Jilin"),
    ("Baishan", "Jilin"),
    ("Songyuan", "Jilin"),
    ("Baicheng", "Jilin"),
    ("Harbin", "Heilongjiang"),
    ("Qiqihar", "Heilongjiang"),
    ("Jixi", "Heilongjiang"),
    ("Hegang", "Heilongjiang"),
    ("Shuangyashan", "Heilongjiang"),
    ("Daqing", "Heilongjiang"),
    ("Jiamusi", "Heilongjiang"),
    ("Qitaihe", "Heilongjiang"),
    ("Mudanjiang", "Heilongjiang"),
    ("Heihe", "Heilongjiang"),
    ("Suihua", "Heilongjiang"),
    ("Nanjing", "Jiangsu"),
    ("Wuxi", "Jiangsu"),
    ("Xuzhou", "Jiangsu"),
    ("Changzhou", "Jiangsu"),
    ("Suzhou", "Jiangsu"),
    ("Nantong", "Jiangsu"),
    ("Lianyungang", "Jiangsu"),
    ("Huaian", "Jiangsu"),
    ("Yancheng", "Jiangsu"),
    ("Yangzhou", "Jiangsu"),
    ("Zhenjiang", "Jiangsu"),
    ("Suqian", "Jiangsu"),
    ("Hangzhou", "Zhejiang"),
    ("Ningbo", "Zhejiang"),
    ("Wenzhou", "Zhejiang"),
    ("Jiaxing", "Zhejiang"),
    ("Huzhou", "Zhejiang"),
    ("Shaoxing", "Zhejiang"),
    ("Jinhua", "Zhejiang"),
    ("Quzhou", "Zhejiang"),
    ("Zhoushan", "Zhejiang"),
    ("Taizhou", "Zhejiang"),
    ("Lishui", "Zhejiang"),
    ("Hefei", "Anhui"),
    ("Wuhu", "Anhui"),
    ("Bengbu", "Anhui"),
    ("Huainan", "Anhui"),
    ("Maanshan", "Anhui"),
    ("Huaibei", "Anhui"),
    ("Tongling", "Anhui"),
    ("Anqing", "Anhui"),
    ("Huangshan", "Anhui"),
    ("Chuzhou", "Anhui"),
    ("Fuyang", "Anhui"),
    ("Luan", "Anhui"),
    ("Bozhou", "Anhui"),
    ("Chizhou", "Anhui"),
    ("Xuancheng", "Anhui"),
    ("Fuzhou", "Fujian"),
    ("Xiamen", "Fujian"),
    ("Putian", "Fujian"),
    ("Sanming", "Fujian"),
    ("Quanzhou", "Fujian"),
    ("Zhangzhou", "Fujian"),
    ("Nanping", "Fujian"),
    ("Longyan", "Fujian"),
    ("Ningde", "Fujian"),
    ("Nanchang", "Jiangxi"),
    ("Jingdezhen", "Jiangxi"),
    ("Pingxiang", "Jiangxi"),
    ("Jiujiang", "Jiangxi"),
    ("Xinyu", "Jiangxi"),
    ("Yingtan", "Jiangxi"),
    ("Ganzhou", "Jiangxi"),
    ("Jian", "Jiangxi"),
    ("Yichun", "Jiangxi"),
    ("Shangrao", "Jiangxi"),
    ("Jinan", "Shandong"),
    ("Qingdao", "Shandong"),
    ("Zibo", "Shandong"),
    ("Zaozhuang", "Shandong"),
    ("Dongying", "Shandong"),
    ("Yantai", "Shandong"),
    ("Weifang", "Shandong"),
    ("Jining", "Shandong"),
    ("Taian", "Shandong"),
    ("Weihai", "Shandong"),
    ("Rizhao", "Shandong"),
    ("Linyi", "Shandong"),
    ("Dezhou", "Shandong"),
    ("Liaocheng", "Shandong"),
    ("Binzhou", "Shandong"),
    ("Heze", "Shandong"),
    ("Zhengzhou", "Henan"),
    ("Kaifeng", "Henan"),
    ("Luoyang", "Henan"),
    ("Pingdingshan", "Henan"),
    ("Anyang", "Henan"),
    ("Hebi", "Henan"),
    ("Xinxiang", "Henan"),
    ("Jiaozuo", "Henan"),
    ("Puyang", "Henan"),
    ("Xuchang", "Henan"),
    ("Luohe", "Henan"),
    ("Sanmenxia", "Henan"),
    ("Nanyang", "Henan"),
    ("Shangqiu", "Henan"),
    ("Xinyang", "Henan"),
    ("Zhoukou", "Henan"),
    ("Zhumadian", "Henan"),
    ("Wuhan", "Hubei"),
    ("Huangshi", "Hubei"),
    ("Shiyan", "Hubei"),
    ("Yichang", "Hubei"),
    ("Xiangyang", "Hubei"),
    ("Ezhou", "Hubei"),
    ("Jingmen", "Hubei"),
    ("Xiaogan", "Hubei"),
    ("Jingzhou", "Hubei"),
    ("Huanggang", "Hubei"),
    ("Xianning", "Hubei"),
    ("Suizhou", "Hubei"),
    ("Changsha", "Hunan"),
    ("Zhuzhou", "Hunan"),
    ("Xiangtan", "Hunan"),
    ("Hengyang", "Hunan"),
    ("Shaoyang", "Hunan"),
    ("Yueyang", "Hunan"),
    ("Changde", "Hunan"),
    ("Zhangjiajie", "Hunan"),
    ("Yiyang", "Hunan"),
    ("Chenzhou", "Hunan"),
    ("Yongzhou", "Hunan"),
    ("Huaihua", "Hunan"),
    ("Loudi", "Hunan"),
    ("Guangzhou", "Guangdong"),
    ("Shaoguan", "Guangdong"),
    ("Shenzhen", "Guangdong"),
    ("Zhuhai", "Guangdong"),
    ("Shantou", "Guangdong"),
    ("Foshan", "Guangdong"),
    ("Jiangmen", "Guangdong"),
    ("Zhanjiang", "Guangdong"),
    ("Maoming", "Guangdong"),
    ("Zhaoqing", "Guangdong"),
    ("Huizhou", "Guangdong"),
    ("Meizhou", "Guangdong"),
    ("Shanwei", "Guangdong"),
    ("Heyuan", "Guangdong"),
    ("Yangjiang", "Guangdong"),
    ("Qingyuan", "Guangdong"),
    ("Dongguan", "Guangdong"),
    ("Zhongshan", "Guangdong"),
    ("Chaozhou", "Guangdong"),
    ("Jieyang", "Guangdong"),
    ("Yunfu", "Guangdong"),
    ("Nanning", "Guangxi"),
    ("Liuzhou", "Guangxi"),
    ("Guilin", "Guangxi"),
    ("Wuzhou", "Guangxi"),
    ("Beihai", "Guangxi"),
    ("Fangchenggang", "Guangxi"),
    ("Qinzhou", "Guangxi"),
    ("Guigang", "Guangxi"),
    ("Baise", "Guangxi"),
    ("Hezhou", "Guangxi"),
    ("Hechi", "Guangxi"),
    ("Laibin", "Guangxi"),
    ("Chongzuo", "Guangxi"),
    ("Haikou", "Hainan"),
    ("Sanya", "Hainan"),
    ("Danzhou", "Hainan"),
    ("Chengdu", "Sichuan"),
    ("Zigong", "Sichuan"),
    ("Panzhihua", "Sichuan"),
    ("Luzhou", "Sichuan"),
    ("Deyang", "Sichuan"),
    ("Mianyang", "Sichuan"),
    ("Guangyuan", "Sichuan"),
    ("Suining", "Sichuan"),
    ("Neijiang", "Sichuan"),
    ("Leshan", "Sichuan"),
    ("Nanchong", "Sichuan"),
    ("Meishan", "Sichuan"),
    ("Yibin", "Sichuan"),
    ("Guangan", "Sichuan"),
    ("Dazhou", "Sichuan"),
    ("Yaan", "Sichuan"),
    ("Bazhong", "Sichuan"),
    ("Ziyang", "Sichuan"),
    ("Guiyang", "Guizhou"),
    ("Liupanshui", "Guizhou"),
    ("Zunyi", "Guizhou"),
    ("Anshun", "Guizhou"),
    ("Bijie", "Guizhou"),
    ("Tongren", "Guizhou"),
    ("Kunming", "Yunnan"),
    ("Qujing", "Yunnan"),
    ("Yuxi", "Yunnan"),
    ("Baoshan", "Yunnan"),
    ("Zhaotong", "Yunnan"),
    ("Lijiang", "Yunnan"),
    ("Puer", "Yunnan"),
    ("Lincang", "Yunnan"),
    ("Dali", "Yunnan"),
    ("Lhasa", "Tibet"),
    ("Shigatse", "Tibet"),
    ("Chamdo", "Tibet"),
    ("Nyingchi", "Tibet"),
    ("Shannan", "Tibet"),
    ("Nagqu", "Tibet"),
    ("Xian", "Shaanxi"),
    ("Tongchuan", "Shaanxi"),
    ("Baoji", "Shaanxi"),
    ("Xianyang", "Shaanxi"),
    ("Weinan", "Shaanxi"),
    ("Yanan", "Shaanxi"),
    ("Hanzhong", "Shaanxi"),
    ("Yulin", "Shaanxi"),
    ("Ankang", "Shaanxi"),
    ("Shangluo", "Shaanxi"),
    ("Lanzhou", "Gansu"),
    ("Jiayuguan", "Gansu"),
    ("Jinchang", "Gansu"),
    ("Baiyin", "Gansu"),
    ("Tianshui", "Gansu"),
    ("Wuwei", "Gansu"),
    ("Zhangye", "Gansu"),
    ("Pingliang", "Gansu"),
    ("Jiuquan", "Gansu"),
    ("Qingyang", "Gansu"),
    ("Dingxi", "Gansu"),
    ("Longnan", "Gansu"),
    ("Xining", "Qinghai"),
    ("Haidong", "Qinghai"),
    ("Golmud", "Qinghai"),
    ("Yinchuan", "Ningxia"),
    ("Shizuishan", "Ningxia"),
    ("Wuzhong", "Ningxia"),
    ("Guyuan", "Ningxia"),
    ("Zhongwei", "Ningxia"),
    ("Urumqi", "Xinjiang"),
    ("Karamay", "Xinjiang"),
    ("Turpan", "Xinjiang"),
    ("Hami", "Xinjiang"),
    ("Kashgar", "Xinjiang"),
    ("Korla", "Xinjiang"),
    ("Yining", "Xinjiang"),
];

/// The largest consumer markets, biggest first; they take the first Zipf ranks, the other cities
/// follow in a fixed pseudo-random order.
pub(super) const TOP_CITIES: &[&str] = &[
    "Shanghai",
    "Beijing",
    "Shenzhen",
    "Guangzhou",
    "Chongqing",
    "Chengdu",
    "Hangzhou",
    "Wuhan",
    "Suzhou",
    "Xian",
    "Nanjing",
    "Tianjin",
    "Changsha",
    "Zhengzhou",
    "Dongguan",
    "Qingdao",
    "Shenyang",
    "Ningbo",
    "Kunming",
    "Hefei",
    "Foshan",
    "Wuxi",
    "Xiamen",
    "Jinan",
    "Fuzhou",
    "Dalian",
    "Harbin",
    "Changchun",
    "Shijiazhuang",
    "Nanning",
    "Nanchang",
    "Guiyang",
    "Taiyuan",
    "Wenzhou",
    "Quanzhou",
    "Changzhou",
    "Nantong",
    "Xuzhou",
    "Urumqi",
    "Lanzhou",
];

/// Kind of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChannelKind {
    Online,
    Offline,
    Social,
}

impl ChannelKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Online => "online",
            ChannelKind::Offline => "offline",
            ChannelKind::Social => "social",
        }
    }
}

/// A sales/engagement channel: id, display name, kind, and for stores the city they are in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Channel {
    pub(super) id: &'static str,
    pub(super) name: &'static str,
    pub(super) kind: ChannelKind,
    pub(super) city: Option<&'static str>,
}

const fn online(id: &'static str, name: &'static str, kind: ChannelKind) -> Channel {
    Channel { id, name, kind, city: None }
}

const fn store(id: &'static str, name: &'static str, city: &'static str) -> Channel {
    Channel { id, name, kind: ChannelKind::Offline, city: Some(city) }
}

/// All channels; the first [`DIGITAL_CHANNELS`] are online/social, the rest are offline stores.
pub(super) const CHANNELS: &[Channel] = &[
    online("wechat", "WeChat Mini Program", ChannelKind::Social),
    online("weibo", "Weibo Shop", ChannelKind::Social),
    online("alipay", "Alipay Mini Program", ChannelKind::Online),
    online("app", "Mobile App", ChannelKind::Online),
    online("web", "Website", ChannelKind::Online),
    online("tmall", "Tmall Flagship Store", ChannelKind::Online),
    online("jd", "JD.com Store", ChannelKind::Online),
    store("store_sh01", "Shanghai Nanjing Road Store", "Shanghai"),
    store("store_sh02", "Shanghai Lujiazui Store", "Shanghai"),
    store("store_sh03", "Shanghai Xujiahui Store", "Shanghai"),
    store("store_bj01", "Beijing Wangfujing Store", "Beijing"),
    store("store_bj02", "Beijing Sanlitun Store", "Beijing"),
    store("store_gz01", "Guangzhou Tianhe Store", "Guangzhou"),
    store("store_gz02", "Guangzhou Beijing Road Store", "Guangzhou"),
    store("store_sz01", "Shenzhen Futian Store", "Shenzhen"),
    store("store_sz02", "Shenzhen Nanshan Store", "Shenzhen"),
    store("store_cd01", "Chengdu Chunxi Road Store", "Chengdu"),
    store("store_hz01", "Hangzhou Wulin Store", "Hangzhou"),
    store("store_wh01", "Wuhan Jianghan Road Store", "Wuhan"),
    store("store_nj01", "Nanjing Xinjiekou Store", "Nanjing"),
    store("store_cq01", "Chongqing Jiefangbei Store", "Chongqing"),
    store("store_xa01", "Xian Zhonglou Store", "Xian"),
    store("store_tj01", "Tianjin Binjiang Road Store", "Tianjin"),
    store("store_su01", "Suzhou Guanqian Street Store", "Suzhou"),
    store("store_cs01", "Changsha Wuyi Square Store", "Changsha"),
    store("store_qd01", "Qingdao Taidong Store", "Qingdao"),
    store("store_xm01", "Xiamen Zhongshan Road Store", "Xiamen"),
];

/// Number of online/social channels at the start of [`CHANNELS`].
pub(super) const DIGITAL_CHANNELS: usize = 7;

/// Channel index of WeChat and of the app in [`CHANNELS`].
pub(super) const CH_WECHAT: usize = 0;
pub(super) const CH_APP: usize = 3;

/// Event types.
pub(super) const EVENT_TYPES: [&str; 6] = ["view", "click", "share", "login", "cart", "coupon"];
pub(super) const EV_SHARE: usize = 2;
pub(super) const EV_CART: usize = 4;
pub(super) const EV_COUPON: usize = 5;

/// Occupations, their weight among working-age adults and their base income band.
pub(super) const OCCUPATIONS: &[(&str, f64, f64)] = &[
    ("engineer", 10.0, 6.5),
    ("teacher", 6.0, 5.0),
    ("doctor", 3.0, 7.0),
    ("nurse", 3.0, 4.5),
    ("civil_servant", 5.0, 5.5),
    ("sales", 9.0, 4.5),
    ("designer", 4.0, 5.5),
    ("accountant", 5.0, 5.0),
    ("lawyer", 1.5, 7.5),
    ("manager", 7.0, 7.0),
    ("entrepreneur", 3.0, 7.0),
    ("freelancer", 6.0, 4.5),
    ("factory_worker", 9.0, 3.0),
    ("farmer", 5.0, 2.5),
    ("retired", 1.0, 3.5),
    ("homemaker", 4.0, 3.0),
    ("driver", 5.0, 3.5),
    ("chef", 3.0, 3.5),
    ("researcher", 2.0, 6.0),
    ("student", 2.0, 1.5),
];
pub(super) const OCC_RETIRED: usize = 14;
pub(super) const OCC_STUDENT: usize = 19;

/// E-mail domains and their shares.
pub(super) const EMAIL_DOMAINS: &[(&str, f64)] = &[
    ("qq.com", 35.0),
    ("163.com", 18.0),
    ("example.com", 15.0),
    ("126.com", 7.0),
    ("gmail.com", 6.0),
    ("outlook.com", 5.0),
    ("sina.com", 4.0),
    ("foxmail.com", 4.0),
    ("icloud.com", 4.0),
    ("hotmail.com", 2.0),
];

/// Mobile number prefixes (the first three digits).
pub(super) const PHONE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152", "153", "155", "156",
    "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "183", "185", "186", "187", "188", "189",
    "198", "199",
];

/// Coarse groups of product categories, used by behaviour-derived tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    Beauty,
    Fashion,
    Electronics,
    Sports,
    Home,
    Baby,
    Books,
    Pet,
    Food,
    Other,
}

/// A product category: name, share of the catalogue, median price (CNY), group, and product nouns.
#[derive(Debug, Clone, Copy)]
pub(super) struct Category {
    pub(super) name: &'static str,
    pub(super) weight: f64,
    pub(super) median_price: f64,
    pub(super) group: Group,
    pub(super) nouns: &'static [&'static str],
}

const fn cat(
    name: &'static str,
    weight: f64,
    median_price: f64,
    group: Group,
    nouns: &'static [&'static str],
) -> Category {
    Category { name, weight, median_price, group, nouns }
}

/// The 40 product categories.
pub(super) const CATEGORIES: &[Category] = &[
    cat(
        "skincare",
        8.0,
        180.0,
        Group::Beauty,
        &["Serum", "Moisturizer", "Cleanser", "Toner", "Sunscreen", "Face Mask", "Eye Cream"],
    ),
    cat(
        "makeup",
        6.0,
        150.0,
        Group::Beauty,
        &["Lipstick", "Foundation", "Mascara", "Eyeliner", "Blush", "Cushion Compact"],
    ),
    cat("fragrance", 2.0, 400.0, Group::Beauty, &["Eau de Parfum", "Eau de Toilette", "Body Mist"]),
    cat("haircare", 3.0, 80.0, Group::Beauty, &["Shampoo", "Conditioner", "Hair Oil", "Hair Mask"]),
    cat("bodycare", 3.0, 60.0, Group::Beauty, &["Body Lotion", "Shower Gel", "Hand Cream", "Body Scrub"]),
    cat("mens_grooming", 2.0, 120.0, Group::Beauty, &["Razor", "Beard Oil", "Face Wash", "Aftershave"]),
    cat("womens_apparel", 6.0, 260.0, Group::Fashion, &["Dress", "Blouse", "Skirt", "Coat", "Cardigan"]),
    cat("mens_apparel", 4.0, 240.0, Group::Fashion, &["Shirt", "Jacket", "Chinos", "Polo", "Hoodie"]),
    cat("kids_apparel", 2.0, 120.0, Group::Baby, &["Romper", "Kids T-Shirt", "Kids Jacket", "Kids Pajamas"]),
    cat("shoes", 4.0, 380.0, Group::Fashion, &["Sneakers", "Boots", "Loafers", "Sandals"]),
    cat("bags", 3.0, 450.0, Group::Fashion, &["Handbag", "Backpack", "Tote", "Wallet"]),
    cat("jewelry", 2.0, 900.0, Group::Fashion, &["Necklace", "Bracelet", "Earrings", "Ring"]),
    cat("watches", 1.0, 1500.0, Group::Fashion, &["Smartwatch", "Quartz Watch", "Automatic Watch"]),
    cat("sportswear", 3.0, 220.0, Group::Sports, &["Running Shoes", "Yoga Pants", "Sports Bra", "Track Jacket"]),
    cat("outdoor", 2.0, 350.0, Group::Sports, &["Tent", "Hiking Boots", "Trekking Poles", "Rain Jacket"]),
    cat("fitness", 2.0, 260.0, Group::Sports, &["Dumbbells", "Yoga Mat", "Resistance Band", "Jump Rope"]),
    cat("smartphones", 2.0, 2800.0, Group::Electronics, &["Smartphone", "Foldable Phone"]),
    cat("laptops", 1.0, 4200.0, Group::Electronics, &["Laptop", "Ultrabook"]),
    cat("tablets", 1.0, 2600.0, Group::Electronics, &["Tablet", "E-Reader"]),
    cat("audio", 2.0, 450.0, Group::Electronics, &["Earbuds", "Headphones", "Bluetooth Speaker"]),
    cat("cameras", 1.0, 3000.0, Group::Electronics, &["Camera", "Lens", "Action Cam"]),
    cat("smart_home", 2.0, 300.0, Group::Electronics, &["Smart Plug", "Smart Bulb", "Robot Vacuum", "Video Doorbell"]),
    cat("home_appliances", 3.0, 900.0, Group::Home, &["Air Fryer", "Rice Cooker", "Air Purifier", "Blender"]),
    cat("kitchen", 3.0, 120.0, Group::Home, &["Cookware Set", "Chef Knife", "Kettle", "Food Container"]),
    cat("furniture", 2.0, 1200.0, Group::Home, &["Desk", "Office Chair", "Bookshelf", "Sofa"]),
    cat("bedding", 2.0, 300.0, Group::Home, &["Duvet", "Pillow", "Bed Sheet Set"]),
    cat("home_decor", 2.0, 150.0, Group::Home, &["Vase", "Floor Lamp", "Rug", "Wall Art"]),
    cat("books", 4.0, 45.0, Group::Books, &["Novel", "Cookbook", "Textbook", "Picture Book"]),
    cat("stationery", 2.0, 25.0, Group::Other, &["Notebook", "Pen Set", "Planner"]),
    cat("toys", 3.0, 150.0, Group::Baby, &["Building Blocks", "Plush Toy", "Puzzle", "Toy Car"]),
    cat("baby_care", 3.0, 130.0, Group::Baby, &["Diapers", "Baby Wipes", "Baby Lotion", "Stroller"]),
    cat("maternity", 1.0, 220.0, Group::Baby, &["Maternity Dress", "Nursing Pillow", "Prenatal Vitamins"]),
    cat("pet_supplies", 2.0, 110.0, Group::Pet, &["Cat Food", "Dog Food", "Cat Litter", "Pet Bed"]),
    cat("snacks", 4.0, 35.0, Group::Food, &["Mixed Nuts", "Potato Chips", "Chocolate", "Dried Fruit"]),
    cat("beverages", 3.0, 40.0, Group::Food, &["Green Tea", "Coffee Beans", "Juice", "Sparkling Water"]),
    cat("fresh_food", 3.0, 60.0, Group::Food, &["Fruit Box", "Beef", "Seafood", "Vegetable Box"]),
    cat("health_supplements", 2.0, 200.0, Group::Other, &["Vitamins", "Protein Powder", "Fish Oil"]),
    cat("household_cleaning", 2.0, 40.0, Group::Home, &["Laundry Detergent", "Dish Soap", "Paper Towels"]),
    cat("automotive", 1.0, 250.0, Group::Other, &["Car Charger", "Dash Cam", "Seat Cover"]),
    cat("gaming", 2.0, 600.0, Group::Electronics, &["Game Console", "Controller", "Gaming Headset", "Video Game"]),
];

/// Brand names are built from these syllables: 20 × 10 = 200 brands, 5 per category.
pub(super) const BRAND_HEADS: [&str; 20] = [
    "Lu", "Ae", "Ver", "Zen", "Mo", "Ka", "Sol", "No", "Vi", "Ori", "Bel", "Cy", "Da", "Fe", "Gra", "Hu", "Ix", "Jo",
    "Qi", "Ta",
];
pub(super) const BRAND_TAILS: [&str; 10] = ["mina", "ra", "vo", "tek", "lia", "xo", "dore", "nix", "ly", "sen"];
pub(super) const BRANDS_PER_CATEGORY: usize = 5;

/// Adjectives used in product names.
pub(super) const PRODUCT_ADJECTIVES: &[&str] = &[
    "Classic",
    "Premium",
    "Essential",
    "Ultra",
    "Pro",
    "Lite",
    "Signature",
    "Everyday",
    "Deluxe",
    "Mini",
    "Max",
    "Pure",
    "Smart",
    "Urban",
    "Natural",
    "Advanced",
];

/// Tags whose membership follows rules (see `docs/generator.md`), in output order; then come
/// [`GENERIC_TAGS`] generic interest tags `interest_0000`...
pub(super) const SEMANTIC_TAGS: &[&str] = &[
    "A",
    "B",
    "C",
    "high_value",
    "night_owl",
    "deal_seeker",
    "churn_risk",
    "new_parent",
    "vip",
    "frequent_buyer",
    "app_user",
    "wechat_fan",
    "beauty_lover",
    "new_customer",
    "loyal_customer",
    "dormant",
    "offline_shopper",
    "omnichannel",
    "social_sharer",
    "cart_abandoner",
    "student",
    "senior",
    "high_income",
    "weekend_shopper",
    "tech_enthusiast",
    "pet_owner",
    "foodie",
    "fashionista",
    "sports_fan",
    "book_lover",
    "home_maker",
    "luxury_buyer",
    "bulk_buyer",
];

/// Number of generic interest tags, so that there are 300 tags in all.
pub(super) const GENERIC_TAGS: usize = 300 - SEMANTIC_TAGS.len();

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashSet;

    #[test]
    fn cities_are_unique_and_cover_every_province() {
        let names: FxHashSet<&str> = CITIES.iter().map(|c| c.0).collect();
        assert_eq!(names.len(), CITIES.len());
        assert!((280..=320).contains(&CITIES.len()), "{} cities", CITIES.len());
        let provinces: FxHashSet<&str> = CITIES.iter().map(|c| c.1).collect();
        assert_eq!(provinces.len(), 31);
        for p in PROVINCES {
            assert!(provinces.contains(p), "{p} has no city");
        }
        for c in TOP_CITIES {
            assert!(names.contains(c), "{c} is not a city");
        }
        for ch in CHANNELS {
            if let Some(city) = ch.city {
                assert!(names.contains(city), "store city {city}");
            }
        }
    }

    #[test]
    fn vocabularies_have_the_promised_sizes() {
        assert_eq!(CATEGORIES.len() * BRANDS_PER_CATEGORY, BRAND_HEADS.len() * BRAND_TAILS.len());
        assert!(CATEGORIES.iter().any(|c| c.name == "skincare"));
        assert_eq!(OCCUPATIONS.len(), 20);
        assert_eq!(OCCUPATIONS[OCC_RETIRED].0, "retired");
        assert_eq!(OCCUPATIONS[OCC_STUDENT].0, "student");
        assert_eq!(CHANNELS[CH_WECHAT].id, "wechat");
        assert_eq!(CHANNELS[CH_APP].id, "app");
        assert!(CHANNELS[..DIGITAL_CHANNELS].iter().all(|c| c.kind != ChannelKind::Offline));
        assert!(CHANNELS[DIGITAL_CHANNELS..].iter().all(|c| c.kind == ChannelKind::Offline));
        assert_eq!(EVENT_TYPES[EV_COUPON], "coupon");
        let tags: FxHashSet<&str> = SEMANTIC_TAGS.iter().copied().collect();
        assert_eq!(tags.len(), SEMANTIC_TAGS.len());
    }
}
